"""Files and the terminal: the one atomic writer, strict JSON, figures and progress bars.

Every file flowcert writes goes through :func:`write_atomic`: the bytes go to a
temporary file created exclusively (``tempfile.mkstemp``) in the destination's
folder, are flushed to disk, get the permissions the umask gives a new file,
and replace the destination by one rename.  A failure removes the temporary
file and raises :class:`~numcore.checks.InputError` naming the file.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import sys
import tempfile

import numpy as np

from .checks import InputError

MAX_READ_BYTES = 2**30  # the largest file flowcert reads back (run files)


def _umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status; elsewhere set and
    restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_destination(path, param: str = "output", inputs=()) -> str:
    """Check before any work that ``path`` can be written; return it as a string.

    Raises InputError when the folder is missing or not writable, the path is a folder or a
    special file (a device, a FIFO, a dangling link: only regular files are ever replaced),
    or the path is one of ``inputs`` (the input is never the output).
    """
    path = os.fspath(path)
    if not path:
        raise InputError(f"`{param}` is empty: expected a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"`{param}` = {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"`{param}` = {path!r}: is a folder, expected a file name")
    if os.path.lexists(path):
        mode = os.stat(path).st_mode if os.path.exists(path) else 0
        if not stat.S_ISREG(mode):
            raise InputError(f"`{param}` = {path!r}: exists and is not a regular file")
        for source in inputs:
            if source is not None and os.path.exists(os.fspath(source)) and _same_file(path, os.fspath(source)):
                raise InputError(f"`{param}` = {path!r}: is an input of this command (it would be overwritten); "
                                 "expected another file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"`{param}` = {path!r}: folder {folder!r} is not writable")
    return path


def check_outputs(outputs: dict, inputs=()) -> None:
    """:func:`check_destination` for each {param: path} (None skipped), and no two outputs the same file."""
    seen = {}
    for param, path in outputs.items():
        if path is None:
            continue
        check_destination(path, param, inputs)
        for other, prev in seen.items():
            if os.path.abspath(os.fspath(path)) == os.path.abspath(prev) or _same_file(os.fspath(path), prev):
                raise InputError(f"`{param}` = {os.fspath(path)!r}: the same file as `{other}`; expected another file")
        seen[param] = os.fspath(path)


def check_folder(path, param: str = "out", inputs=(), writes=()) -> str:
    """Create the output folder ``path`` (and its parents) if needed and check that files can be
    created in it, before any work; InputError naming the folder otherwise.

    ``writes``: the command's files in the folder, as patterns relative to it (``config.json``,
    ``*.png``, ``jobs/*``); an input (of ``inputs``, resolved through links) that is one of them is
    refused: the command would replace it."""
    path = os.fspath(path)
    if not path:
        raise InputError(f"`{param}` is empty: expected a folder name")
    import fnmatch

    home = os.path.realpath(path)
    for source in inputs:
        if source is None or not os.path.exists(os.fspath(source)):
            continue
        rel = os.path.relpath(os.path.realpath(os.fspath(source)), home)
        if not rel.startswith(os.pardir) and any(fnmatch.fnmatch(rel, w) for w in writes):
            raise InputError(f"`{param}` = {path!r}: the command writes {rel!r} there, which is its input "
                             f"{os.fspath(source)!r} (it would be overwritten); expected another folder")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InputError(f"`{param}` = {path!r}: exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".flowcert-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"`{param}` = {path!r}: the folder cannot be written: {exc.strerror or exc}") from None
    return path


def write_atomic(path, data: bytes | str, param: str = "output", *, makedirs: bool = False) -> str:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` in one rename; return the path.

    The temporary file is created exclusively by ``tempfile.mkstemp`` in the destination's
    folder (a hidden name, never following a link), removed on any failure (KeyboardInterrupt
    included), given the permissions the umask gives a new file, and flushed to disk before the
    rename.  ``makedirs`` creates missing parent folders first (run folders); otherwise a missing
    folder is an error.

    Raises:
        InputError: the destination is not writable (missing folder, no permission, full disk,
            a special file); the message names the file.
    """
    if makedirs:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as exc:
            raise InputError(f"`{param}` = {os.fspath(path)!r}: its folder cannot be created: {exc.strerror}") from None
    path = check_destination(path, param)
    folder = os.path.dirname(os.path.abspath(path))
    payload = data.encode() if isinstance(data, str) else bytes(data)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(f"`{param}` = {path!r} cannot be written: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def open_regular(path, what: str = "file") -> tuple[int, os.stat_result]:
    """(a read-only descriptor, its stat) of a regular file, opened without blocking and checked on the open
    descriptor, so a FIFO, a device (a link to /dev/zero) or a folder is refused before anything is read.
    The caller closes the descriptor.

    Raises:
        InputError: naming the file and what it is instead.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(f"{what} {path!r} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise InputError(f"{what} {path!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        mode = st.st_mode
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise InputError(f"{what} {path!r} is {kind}: expected a regular file")
    return fd, st


def read_bounded(path, what: str = "file", limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of a regular file, at most ``limit`` (reads ``limit`` + 1 bytes to tell); a FIFO, a device or a
    folder is refused before anything is read (:func:`open_regular`).

    Raises:
        InputError: naming the file; never showing its content.
    """
    path = os.fspath(path)
    fd, _ = open_regular(path, what)
    try:
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputError(f"{what} {path!r} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise InputError(f"{what} {path!r} is larger than {limit} bytes: expected at most {limit} bytes")
    return b"".join(chunks)


def read_npy(path, what: str = "data", limit: int | None = None) -> np.ndarray:
    """The array in a ``.npy`` file, read without trusting the file: a regular file of at most ``limit`` bytes
    (default: the memory budget) read by :func:`read_bounded`, its header parsed on its own, the array built only
    when the bytes after the header hold exactly what the header claims, and never an object (pickled) array.

    Raises:
        InputError: naming the file and what is wrong (not a file, empty, not .npy, a corrupt header, object
            dtype, truncated or padded data); never showing its content.
    """
    from numpy.lib import format as npf

    from .checks import memory_budget

    path = os.fspath(path)
    raw = read_bounded(path, f"`{what}`", int(memory_budget()) if limit is None else limit)
    name = f"`{what}` = {path!r}"
    if not raw:
        raise InputError(f"{name} is empty: expected a .npy file (numpy.save)")
    buf = io.BytesIO(raw)
    try:
        version = npf.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = npf.read_array_header_2_0(buf)
        else:
            raise ValueError(f"format version {version}")
    except Exception:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors, ...
        raise InputError(f"{name} is not a .npy file numpy.save writes (its header does not parse): expected an "
                         "array saved with numpy.save") from None
    if dtype.hasobject:
        raise InputError(f"{name} holds Python objects (a pickle, never loaded): expected an array of numbers")
    count = math.prod(shape)
    need = count * dtype.itemsize
    have = len(raw) - buf.tell()
    if need != have:
        raise InputError(f"{name}: its header promises shape {tuple(shape)} of {dtype} ({need} bytes), the file holds "
                         f"{have} bytes after it: expected a complete .npy file (truncated or damaged?)")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=buf.tell())
    return arr.reshape(shape, order="F" if fortran else "C").copy()  # writable, independent of ``raw``


def tensor_name(name) -> str:
    """A tensor's name for a message (``'conv_in.weight'``), or ``(not shown)`` when it is not a plain dotted name."""
    plain = isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.\-]{1,120}", name) is not None
    return repr(name) if plain else "(not shown)"


SAFETENSORS_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on its JSON header
SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                      "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def safetensors_header(path, what: str = "weights file") -> dict:
    """The tensors a ``.safetensors`` file declares, {name: (dtype, shape)}, read from its header alone (the
    tensors are not read; the file is never unpickled: safetensors holds no code).

    The header is checked as strictly as every document (:func:`parse_document`: no key twice) and against the
    file: known dtypes, shapes of non-negative integers, each tensor's byte range exactly its size, the ranges
    tiling the data without gap or overlap, and the file exactly as long as the header says (a truncated or
    padded file is refused).  A FIFO, a device or a folder is refused before anything is read.

    Raises:
        InputError: naming the file and what is wrong with it.
    """
    path = os.fspath(path)
    fd, st = open_regular(path, what)
    try:
        head = os.pread(fd, 8, 0)
        if len(head) < 8:
            raise InputError(f"{what} {path!r} is {len(head)} bytes long: expected a safetensors file")
        n = int.from_bytes(head, "little")
        if n > min(SAFETENSORS_HEADER_BYTES, st.st_size - 8):
            raise InputError(f"{what} {path!r} declares a header of {n} bytes in a file of {st.st_size}: expected a "
                             "complete safetensors file (truncated, or not safetensors)")
        raw = os.pread(fd, n, 8)
    except OSError as exc:
        raise InputError(f"{what} {path!r} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) != n:
        raise InputError(f"{what} {path!r} ended inside its header: expected a complete safetensors file")
    doc = parse_document(raw.rstrip(b" "), "json", what, path)
    if not isinstance(doc, dict):
        raise InputError(f"{what} {path!r} has a header that is not a mapping: expected a safetensors file")
    tensors, ranges = {}, []
    for name, entry in doc.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise InputError(f"{what} {path!r} has __metadata__ that is not text: expected a safetensors file")
            continue
        bad = f"{what} {path!r}: tensor {tensor_name(name)}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise InputError(f"{bad} is not described by dtype, shape and data_offsets: expected a safetensors file")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise InputError(f"{bad} has an unknown dtype: expected one of {', '.join(SAFETENSORS_DTYPES)}")
        ints = lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0  # noqa: E731
                                                     for x in v)
        if not ints(shape) or len(shape) > 8 or not ints(offsets) or len(offsets) != 2:
            raise InputError(f"{bad} has a malformed shape or byte range: expected a safetensors file")
        size = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if offsets[1] - offsets[0] != size:
            raise InputError(f"{bad} has a byte range of {offsets[1] - offsets[0]} bytes for {size} bytes of data: "
                             "expected a safetensors file")
        tensors[name] = (dtype, tuple(shape))
        ranges.append(tuple(offsets))
    ranges.sort()
    end = 0
    for lo, hi in ranges:
        if lo != end:
            raise InputError(f"{what} {path!r} has tensors that overlap or leave gaps: expected a safetensors file")
        end = hi
    if 8 + n + end != st.st_size:
        raise InputError(f"{what} {path!r} is {st.st_size} bytes long, its header describes {8 + n + end}: "
                         "expected a complete safetensors file (truncated or padded)")
    return tensors


def jsonable(obj):
    """Plain JSON values: arrays to lists, numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(obj, indent: int | None = 2) -> str:
    """Strict JSON text (no NaN or Infinity: they become null) of dicts, lists, arrays and scalars."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def write_json(path, obj, param: str = "output") -> str:
    """:func:`to_json` of ``obj`` written atomically, with a trailing newline."""
    return write_atomic(path, to_json(obj) + "\n", param)


MAX_DEPTH = 32  # containers inside containers in any document flowcert reads (specs: 4, run files: 6, configs: 3)
DOCUMENT_FORMATS = ("json", "yaml", "toml")


class _Refused(Exception):
    """A document that parses but breaks a rule of :func:`parse_document` (the reason, without the file)."""


def _shown_key(key) -> str:
    """A key for a message: shown only when it is a plain word (a field name), never arbitrary content."""
    word = isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,39}", key) is not None
    return repr(key) if word else "(not shown)"


def _json_pairs(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"has the key {_shown_key(k)} twice: expected each key once")
        out[k] = v
    return out


def _no_constant(name):
    raise _Refused(f"holds the constant {name}: expected strict JSON (finite numbers; flowcert writes null for a "
                   "number that is not finite)")


def _yaml_load(text: str, values_limit: int):
    """YAML through the safe loader: a key given twice in one mapping is refused, and so is a document whose aliases
    expand to more than ``values_limit`` values or refer to themselves (measured on the node graph, before anything
    is constructed)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        if key in seen:
                            raise _Refused(f"has the key {_shown_key(key)} twice: expected each key once")
                        seen.add(key)
                    except TypeError:  # an unhashable key: the constructor refuses it below
                        pass
            return super().construct_mapping(node, deep=deep)

    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}
        state: dict[int, int] = {}  # 1 = on the path (a cycle when met again), 2 = done
        stack = [(node, False)]
        while stack:
            n, closing = stack.pop()
            key = id(n)
            if closing:
                kids = n.value if isinstance(n, yaml.SequenceNode) else [v for kv in n.value for v in kv]
                sizes[key] = sum(sizes[id(c)] for c in kids) + 1
                state[key] = 2
                if sizes[key] > values_limit:
                    raise _Refused(f"expands to more than {values_limit} values through YAML aliases: expected a "
                                   "document of at most that size")
                continue
            if state.get(key) == 2:
                continue
            if state.get(key) == 1:
                raise _Refused("holds a recursive YAML alias: expected plain lists and mappings")
            if isinstance(n, yaml.ScalarNode):
                sizes[key], state[key] = 1, 2
                continue
            state[key] = 1
            stack.append((n, True))
            kids = n.value if isinstance(n, yaml.SequenceNode) else [v for kv in n.value for v in kv]
            stack.extend((c, False) for c in kids)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _parse_error(exc) -> str:
    """Where a parser failed (line and column), without the text around it (it may be a secret)."""
    mark = getattr(exc, "problem_mark", None)  # yaml
    if mark is not None:
        # quoted parts may be file content: keep only single punctuation marks (',', ']', ':')
        problem = re.sub(r"'([^']*)'|\"([^\"]*)\"",
                         lambda m: m.group(0) if len(m.group(0)) <= 4 and not any(c.isalnum() for c in m.group(0))
                         else "(...)", getattr(exc, "problem", None) or "syntax error")[:80]
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = " ".join(str(exc).split())
    found = re.search(r"\(at line \d+, column \d+\)", text)  # tomllib
    return (text[: found.end()] if found and found.start() < 80 else "syntax error")[:120]


def _check_tree(doc) -> None:
    """Nesting at most MAX_DEPTH, and no key with a control character (iterative: any depth, no recursion)."""
    from .checks import unsafe_at

    stack = [(doc, 0, "the document")]
    while stack:
        value, depth, where = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise _Refused(f"is nested more than {MAX_DEPTH} levels deep: expected at most {MAX_DEPTH}")
        if isinstance(value, list):
            if not set(map(type, value)) <= {int, float}:  # a list of numbers has nothing below it
                stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value))
            continue
        for k, v in value.items():
            if isinstance(k, str) and unsafe_at(k) is not None:
                raise _Refused(f"has a key holding the control character U+{ord(k[unsafe_at(k)]):04X} in {where}: "
                               "expected printable keys")
            shown = _shown_key(k)
            name = k if shown != "(not shown)" else "(key)"
            stack.append((v, depth + 1, name if where == "the document" else f"{where}.{name}"))


def parse_document(raw: bytes, fmt: str, what: str, path, *, constants: bool = False, values_limit: int | None = None):
    """The document in ``raw`` (bytes of a ``fmt`` file: json, yaml or toml), parsed strictly: the one parser of
    every spec, configuration and run file flowcert reads.

    * a key given twice in one mapping is refused in every format (JSON and YAML parsers would keep the last);
    * JSON's NaN, Infinity and -Infinity are refused, unless ``constants`` (then they are floats, for a caller
      that checks every number against its field's domain and names the field);
    * nesting deeper than :data:`MAX_DEPTH` and keys holding a control character are refused;
    * YAML goes through the safe loader, and aliases that expand beyond ``values_limit`` values (default: the
      largest spec) or refer to themselves are refused before anything is constructed.

    Raises:
        InputError: naming ``what`` and ``path`` and where the parser failed (line and column), never the
            file's content (a key is shown only when it is a plain word).
    """
    from .checks import MAX_ARRAY_VALUES

    path = os.fspath(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {path!r} is not UTF-8 text: expected {fmt.upper()}") from None
    try:
        if fmt == "json":
            doc = json.loads(text, object_pairs_hook=_json_pairs,
                             parse_constant=float if constants else _no_constant)
        elif fmt == "toml":
            import tomllib

            doc = tomllib.loads(text)
        elif fmt == "yaml":
            doc = _yaml_load(text, MAX_ARRAY_VALUES if values_limit is None else values_limit)
        else:  # pragma: no cover - a caller's bug
            raise ValueError(f"unknown document format {fmt!r}")
        _check_tree(doc)
    except _Refused as exc:
        raise InputError(f"{what} {path!r} {exc}") from None
    except InputError:
        raise
    except Exception as exc:  # parser errors of three libraries
        how = "is not valid JSON" if fmt == "json" else f"does not parse as {fmt.upper()}"
        raise InputError(f"{what} {path!r} {how}: {_parse_error(exc)}") from None
    return doc


def read_document(path, what: str = "file", fmt: str = "json", *, limit: int = MAX_READ_BYTES,
                  constants: bool = False, values_limit: int | None = None):
    """:func:`read_bounded` and :func:`parse_document`: the document in ``path`` (a regular file of at most
    ``limit`` bytes), strictly parsed; InputError naming the file otherwise."""
    return parse_document(read_bounded(path, what, limit), fmt, what, path, constants=constants,
                          values_limit=values_limit)


def read_json(path, what: str = "file", *, limit: int = MAX_READ_BYTES, constants: bool = False):
    """The strict JSON document in ``path`` (a regular file of at most 1 GiB; no duplicate keys, no NaN or
    Infinity unless ``constants``; :func:`parse_document`); InputError naming the file if it is unreadable or
    not such JSON (the message never shows the file's content)."""
    return read_document(path, what, "json", limit=limit, constants=constants)


def npy_bytes(array) -> bytes:
    """The .npy encoding of ``array`` (for :func:`write_atomic`)."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def save_figure(fig, path, param: str = "plot", dpi: int = 120) -> str:
    """Render a matplotlib figure to PNG and write it atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return write_atomic(path, buf.getvalue(), param)


def private_folder(name: str) -> str | None:
    """A folder of this user under the temporary directory (``<tmp>/<name>-<uid>``), created with mode
    0700 and used only if it is a real folder owned by this user and closed to others (caches hold
    content that is loaded back); None when no such folder can be had."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    path = os.path.join(tempfile.gettempdir(), f"{name}-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o077:
        return None
    return path if os.access(path, os.W_OK | os.X_OK) else None


def _matplotlib_config() -> None:
    """Point MPLCONFIGDIR at a private folder when matplotlib's own (in the home folder) is not writable,
    so that a service user without a home gets no warnings from it."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    own = os.path.join(base, "matplotlib")
    try:
        os.makedirs(own, exist_ok=True)
        if os.access(own, os.W_OK | os.X_OK):
            return
    except OSError:
        pass
    folder = private_folder("flowcert-matplotlib")
    if folder is not None:
        os.environ["MPLCONFIGDIR"] = folder


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    _matplotlib_config()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def progress(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on standard error (silent when disabled or not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled or None, leave=False,
                dynamic_ncols=True)


class _NoBar:
    """A progress bar that shows nothing (the default of library functions)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def close(self):
        pass


def no_progress(total: int = 0, desc: str = "") -> _NoBar:
    """The silent stand-in for :func:`progress`: library functions take either."""
    return _NoBar()
