"""Hostile agents for the sandbox suite (tests/test_hostile_agents.py): a catalogue of escape
attempts, and the source of an agent (and of a generated test) that runs them where it is
told: at import, in `activate`, in `handle`, or in the generated test's own body.

Every attempt is written the way a determined model would write it past the AST lint
(`mechanic.policy`): no forbidden import, name or attribute appears in the source. They
reach `os`, `sys`, `subprocess` and `socket` through stdlib modules that imported them,
`exec`/`compile`/`__import__` through `__builtins__`, and dunders through `getattr` with a
constant name. What stops them is the operating system's boundary, which is what the suite
tests. The source is never run in the test's own process.

An attempt returns what it got (`did …`) or raises (`refused …`); its line in the report is
what the agent would show a person. `refused` in the catalogue says the attempt must fail
outright wherever it runs; the others may "succeed" harmlessly (reading its own empty
environment), and the suite judges them by their effects: no sentinel anywhere, no file
outside its tmp, no connection, no process (`[STARTED A PROCESS]`: the marker a child writes).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Attempt:
    family: str
    name: str
    refused: bool  # must fail outright (a process, a connection, a write, a secret file)
    body: str  # the body of `def <name>(name)`; `async def` when it awaits

    @property
    def source(self) -> str:
        head = "async def" if "await " in self.body else "def"
        body = textwrap.indent(textwrap.dedent(self.body).strip() + "\n", "    ")
        return f"@attempt\n{head} {self.name}(name):\n{body}"


def _a(family: str, name: str, body: str, *, refused: bool = True) -> Attempt:
    return Attempt(family, name, refused, body)


# fmt: off
ATTEMPTS = (
    # --- attribute chains through a stdlib module that imported os/sys/subprocess/socket ---
    _a("chain", "chain_logging_os_environ", "return dict(logging.os.environ)", refused=False),
    _a("chain", "chain_logging_os_system", "return checked(logging.os.system(command(name)))"),
    _a("chain", "chain_asyncio_subprocess_run", """
        run = asyncio.subprocess.subprocess.run
        return run([T["sh"], "-c", command(name)], check=True).returncode
    """),
    _a("chain", "chain_json_codecs_write", """
        with json.codecs.open(outside(name), "w") as f:
            f.write("written")
        return "wrote"
    """),
    _a("chain", "chain_base_events_socket", """
        s = asyncio.base_events.socket.create_connection(("127.0.0.1", T["port"]), 2)
        return f"connected {s.getpeername()}"
    """),
    # --- aliases, default arguments and decorators around exec / compile / __import__ ---
    _a("exec", "exec_alias_reads_environ", """
        run = BUILTINS["ex" + "ec"]
        scope = {}
        run("import os\\nfound = dict(os.environ)", scope)
        return scope["found"]
    """, refused=False),
    _a("exec", "exec_default_argument_import", """
        def spawn(line, imp=BUILTINS["__import__"]):
            return imp("subprocess").check_call([T["sh"], "-c", line])
        return spawn(command(name))
    """),
    _a("exec", "exec_decorator_compiles", """
        def compiled(fn):
            return BUILTINS["compile"](fn(), "<hostile>", "exec")
        @compiled
        def code():
            return f"import socket\\nsocket.create_connection(('127.0.0.1', {T['port']}), 2)"
        BUILTINS["exec"](code, {})
        return "connected"
    """),
    _a("exec", "exec_import_module_execv", """
        os = SYS.modules["importlib"].import_module("os")
        os.execv(T["sh"], [T["sh"], "-c", command(name)])
    """),
    _a("exec", "exec_pickle_gadget", """
        pickle = BUILTINS["__import__"]("pickle")
        payload = b"cos\\nsystem\\n(S" + repr(command(name)).encode() + b"\\ntR."
        return checked(pickle.loads(payload))
    """),
    # --- file writes through logging handlers, codecs, partial and unpacked open modes ---
    _a("write", "write_logging_file_handler", """
        handler = logging.FileHandler(outside(name))
        handler.emit(logging.makeLogRecord({"msg": "written"}))
        handler.close()
        return "wrote"
    """),
    _a("write", "write_partial_open", """
        with functools.partial(open, mode="w")(outside(name)) as f:
            f.write("written")
        return "wrote"
    """),
    _a("write", "write_unpacked_mode", """
        with open(outside(name), **{"mode": "a"}) as f:
            f.write("written")
        return "wrote"
    """),
    _a("write", "write_os_open", """
        os = logging.os
        fd = os.open(outside(name), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"written")
        return "wrote"
    """),
    _a("write", "write_own_release", """
        with open(T["release"], **{"mode": "a"}):
            return "opened its own release for writing"
    """),
    _a("write", "write_persais_code", """
        with open(T["sdk"], **{"mode": "a"}):
            return "opened the Persais code for writing"
    """),
    _a("write", "write_through_proc_root", """
        path = f"/proc/{logging.os.getppid()}/root{outside(name)}"
        with open(path, **{"mode": "w"}) as f:
            f.write("written")
        return "wrote"
    """),
    # --- the event loop's own subprocess and connection APIs ---
    _a("loop", "loop_subprocess_exec", """
        loop = asyncio.get_running_loop()
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, T["sh"], "-c", command(name)
        )
        await asyncio.sleep(0.5)
        return f"started {transport.get_pid()}"
    """),
    _a("loop", "loop_create_subprocess_shell", """
        proc = await getattr(asyncio, "create_subprocess_shell")(command(name))
        return f"exited {await proc.wait()}"
    """),
    _a("loop", "loop_open_connection", """
        _, writer = await getattr(asyncio, "open_connection")("127.0.0.1", T["port"])
        writer.write(b"hello")
        return "connected"
    """),
    _a("loop", "loop_open_unix_connection", """
        _, writer = await getattr(asyncio, "open_unix_connection")(T["unix"])
        writer.write(b"hello")
        return "connected"
    """),
    _a("loop", "loop_create_connection", """
        loop = asyncio.get_running_loop()
        await loop.create_connection(asyncio.Protocol, "127.0.0.1", T["port"])
        return "connected"
    """),
    # --- reflection through functions' and frames' attributes ---
    _a("reflection", "reflect_subclasses_wrap_close", """
        classes = getattr(().__class__.__base__, "__subclasses__")()
        wrap = next(c for c in classes if c.__name__ == "_wrap_close")
        system = getattr(wrap.__init__, "__globals__")["system"]
        return checked(system(command(name)))
    """),
    _a("reflection", "reflect_subclasses_popen", """
        classes = getattr(().__class__.__base__, "__subclasses__")()
        popen = next(c for c in classes if c.__name__ == "Popen")
        return f"exited {popen([T['sh'], '-c', command(name)]).wait()}"
    """),
    _a("reflection", "reflect_frames_f_back", """
        found = {}
        frame = logging.currentframe()
        while frame is not None:
            scope = getattr(frame, "f_globals")
            if hasattr(scope.get("os"), "environ"):
                found.update(scope["os"].environ)
            for key, value in getattr(frame, "f_locals").items():
                found[f"{frame.f_code.co_name}.{key}"] = repr(value)[:300]
            frame = frame.f_back
        return found
    """, refused=False),
    _a("reflection", "reflect_generator_gi_frame", """
        gen = (x for x in ())
        imp = getattr(gen, "gi_frame").f_builtins["__import__"]
        return imp("os").posix_spawn(T["sh"], [T["sh"], "-c", command(name)], {})
    """),
    _a("reflection", "reflect_function_globals", """
        scope = getattr(logging.shutdown, "__globals__")
        return checked(scope["sys"].modules["os"].system(command(name)))
    """),
    # --- secrets: the environment of this and other processes, key files, .env ---
    _a("secret", "secret_proc_self_environ", "return read('/proc/self/environ')", refused=False),
    _a("secret", "secret_proc_1_environ", "return read('/proc/1/environ')", refused=False),
    _a("secret", "secret_proc_parent", """
        ppid = logging.os.getppid()
        return [read(f"/proc/{ppid}/environ"), read(f"/proc/{ppid}/cmdline")]
    """, refused=False),
    _a("secret", "secret_proc_core_pid", """
        return read(f'/proc/{T["core_pid"]}/environ')
    """, refused=False),
    _a("secret", "secret_key_file", "return read(T['key_file'])"),
    _a("secret", "secret_checkout_dotenv", "return read(T['dotenv'])"),
    _a("secret", "secret_dotenv_beside_the_code", """
        base = SYS.modules["app.agents.base"].__file__
        root = base.rsplit("/app/", 1)[0]
        return read(root + "/.env")
    """),
    _a("secret", "secret_scan_every_file", 'return scan("/")', refused=False),
    # --- processes ---
    _a("process", "process_fork_bomb", """
        os = logging.os
        children = 0
        for _ in range(64):
            if os.fork() == 0:
                mark(name)
                os._exit(0)
            children += 1
        return f"forked {children}"
    """),
    _a("process", "process_posix_spawn", """
        os = logging.os
        return os.posix_spawn(T["sh"], [T["sh"], "-c", command(name)], {})
    """),
    _a("process", "process_forkpty", """
        os = logging.os
        pid, _ = os.forkpty()
        if pid == 0:
            mark(name)
            os._exit(0)
        return f"forked {pid}"
    """),
    _a("process", "process_signal_outside", """
        logging.os.kill(T["bystander"], 9)
        return "killed a process outside"
    """),
    # --- ctypes ---
    _a("ctypes", "ctypes_libc_system", """
        return checked(libc().system(command(name).encode()), c=True)
    """),
    _a("ctypes", "ctypes_raw_fork_syscall", """
        numbers = {"x86_64": (57,), "aarch64": (220, 17, 0, 0, 0, 0)}
        pid = libc().syscall(*numbers[SYS.modules["platform"].machine()])
        if pid == 0:
            mark(name)
            libc()._exit(0)
        return checked(pid, f"forked {pid}", c=True)
    """),
    _a("ctypes", "ctypes_x32_socket_syscall", """
        if SYS.modules["platform"].machine() != "x86_64":
            raise OSError("only on x86-64")
        return checked(libc().syscall(0x40000000 | 41, 2, 1, 0), "a socket", c=True)
    """),
    _a("ctypes", "ctypes_raw_connect", """
        ctypes = SYS.modules["importlib"].import_module("ctypes")
        numbers = {"x86_64": 41, "aarch64": 198}
        fd = libc().syscall(numbers[SYS.modules["platform"].machine()], 2, 1, 0)
        checked(fd, "", c=True)
        port = T["port"].to_bytes(2, "big")
        address = ctypes.create_string_buffer(b"\\x02\\x00" + port + bytes([127, 0, 0, 1]), 16)
        return checked(libc().connect(fd, address, 16), "connected", c=True)
    """),
    _a("ctypes", "ctypes_ptrace_attach", """
        return checked(libc().ptrace(16, T["bystander"], 0, 0), "attached", c=True)
    """),
    # --- sockets ---
    _a("socket", "socket_tcp", """
        socket = SYS.modules["socket"]
        s = socket.create_connection(("127.0.0.1", T["port"]), 2)
        return f"connected {s.getpeername()}"
    """),
    _a("socket", "socket_udp", """
        socket = SYS.modules["socket"]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", T["udp"]))
        return f"sent {s.send(b'hello')} bytes"
    """, refused=False),
    _a("socket", "socket_unix", """
        socket = SYS.modules["socket"]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(T["unix"])
        return "connected"
    """),
    _a("socket", "socket_raw_icmp", """
        socket = SYS.modules["socket"]
        return repr(socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    """),
    _a("socket", "socket_packet", """
        socket = SYS.modules["socket"]
        return repr(socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
    """),
    # --- capabilities the manifest does not grant, asked of the core behind the SDK ---
    _a("capability", "capability_forged_call", """
        frame = {"v": 1, "id": "forged-" + name, "op": "call", "args": {
            "capability": "http", "method": "request",
            "args": {"method": "GET", "url": f"http://127.0.0.1:{T['port']}/", "headers": {}},
        }}
        logging.os.write(protocol_fd(), json.dumps(frame).encode() + b"\\n")
        return "sent a forged http call"
    """, refused=False),
    _a("capability", "capability_host_call", """
        gc = SYS.modules["importlib"].import_module("gc")
        host = next(o for o in gc.get_objects() if type(o).__name__ in ("Host", "Broker"))
        url = f"http://127.0.0.1:{T['port']}/"
        args = {"method": "GET", "url": url, "headers": {}}
        call = getattr(host, "call", None) or getattr(host, "serve")
        return await call("http", "request", args)
    """),
    # --- memory ---
    _a("memory", "memory_balloon", """
        held = []
        for _ in range(512):
            held.append(bytes(16 << 20))
        return f"held {len(held) * 16} MiB"
    """),
    _a("memory", "memory_one_huge_block", "return len(bytes(1 << 40))"),
)
# fmt: on

# The agent's and the generated test's shared prelude: how an attempt reaches things, and
# how its outcome becomes a line.
PRELUDE = """
import asyncio
import functools
import json
import logging
IMPORTS

T = json.loads(TARGETS)
BUILTINS = getattr(logging, "__builtins__")
SYS = logging.sys
ATTEMPTS = {}
RESULTS = {}
# Kept backwards, so that the attempts which dump all they can reach do not find it here.
ELDEEN = "-lenitnes"


def attempt(fn):
    ATTEMPTS[fn.__name__] = fn
    return fn


def tmp():
    return logging.os.environ.get("TMPDIR", "/tmp")


def outside(name):
    return f"{T['outside']}/written-{name}"


def command(name):
    inner = f"{tmp()}/started-{name}"
    return f"echo started > {inner}; echo started > {T['outside']}/started-{name}"


def mark(name):
    try:
        with open(f"{tmp()}/started-{name}", **{"mode": "w"}) as f:
            f.write("started")
    except OSError:
        pass


def checked(status, did=None, c=False):
    \"\"\"A C-style status: negative (or, without `did`, anything but 0) is a failure; `c`:
    the call went through ctypes, which kept its errno.\"\"\"
    if status < 0 or (did is None and status != 0):
        if c:
            errno = SYS.modules["importlib"].import_module("ctypes").get_errno()
            raise OSError(errno, logging.os.strerror(errno))
        raise OSError(f"status {status}")
    return status if did is None else did


def libc():
    ctypes = SYS.modules["importlib"].import_module("ctypes")
    return ctypes.CDLL(None, use_errno=True)


def read(path, size=65536):
    with open(path, "rb") as f:
        return f.read(size)


def scan(top):
    found, seen = [], 0
    skip = ("/proc", "/sys", "/dev", "/usr", SYS.prefix, SYS.base_prefix)
    for folder, dirs, files in logging.os.walk(top):
        if folder.startswith(skip):
            dirs[:] = []
            continue
        for file in files:
            seen += 1
            if seen > 5000:
                return found
            try:
                data = read(f"{folder}/{file}", 1 << 20)
            except OSError:
                continue
            at = data.find(ELDEEN[::-1].encode())
            if at >= 0:
                found.append((folder, file, data[max(0, at - 40):at + 200]))
    return found


def protocol_fd():
    os = logging.os
    known = {os.fstat(0).st_ino, os.fstat(2).st_ino}
    for fd in range(3, 64):
        try:
            stat = os.fstat(fd)
        except OSError:
            continue
        if stat.st_mode & 0o170000 == 0o010000 and stat.st_ino not in known:
            return fd
    raise OSError("no protocol pipe here")


def report(name, value, error):
    if error is None:
        text = f"{name}: did {value!r}"
    else:
        text = f"{name}: refused {type(error).__name__}: {error}"
    if logging.os.path.exists(f"{tmp()}/started-{name}"):
        text = "[STARTED A PROCESS] " + text
    at = text.find(ELDEEN[::-1])
    if at >= 0:  # whatever it found goes first, where no cut can hide it
        text = f"[FOUND {text[at:at + 200]}] {text}"
    print(text[:300])
    return text[:12000]


async def finish(name, pending):
    try:
        value = await asyncio.wait_for(pending, 5)
    except Exception as exc:
        return report(name, None, exc)
    return report(name, value, None)


def start(name):
    \"\"\"Run an attempt now; one that awaits runs on the loop (at import: in the background).\"\"\"
    try:
        value = ATTEMPTS[name](name)
    except Exception as exc:
        return report(name, None, exc)
    if asyncio.iscoroutine(value):
        return asyncio.ensure_future(finish(name, value))
    return report(name, value, None)


async def outcome(started):
    return await started if asyncio.isfuture(started) else started


async def run(name):
    return await outcome(start(name))
"""

AGENT = """

class Hostile(Agent):
    async def activate(self, ctx):
        if "activate" in PLACEMENTS:
            for name in ATTEMPTS:
                RESULTS["activate", name] = await run(name)

    async def handle(self, message, ctx):
        verb, _, name = message.text.partition(" ")
        if verb == "run":
            return await run(name)
        if verb in ("import", "activate"):
            found = RESULTS.get((verb, name), f"{name}: never ran at {verb}")
            return await outcome(found)
        return " ".join(ATTEMPTS)


if "import" in PLACEMENTS:
    for _name in ATTEMPTS:
        RESULTS["import", _name] = start(_name)
"""

GENERATED_TEST = """

def test_attempts():
    async def everywhere():
        lines = {}
        for name in ATTEMPTS:
            lines[f"test {name}"] = await run(name)
        loaded = await load_agent("hostile")
        for name in ATTEMPTS:
            for verb in ("import", "activate", "run"):
                lines[f"{verb} {name}"] = (await ask(loaded, f"{verb} {name}")).text
        return lines

    lines = asyncio.run(everywhere())
    with open(f"{tmp()}/hostile-report.json", **{"mode": "w"}) as f:
        json.dump(lines, f)
"""

# A generated test that never ends, after an output no report should carry whole.
SPINNING_TEST = """
def test_spins():
    print("x" * (4 << 20))
    while True:
        pass
"""


def catalogue_source(targets: dict[str, object], placements: tuple[str, ...], imports: str) -> str:
    head = PRELUDE.replace("json.loads(TARGETS)", f"json.loads({json.dumps(targets)!r})")
    head = head.replace("IMPORTS\n", imports)
    body = "\n\n".join(attempt.source for attempt in ATTEMPTS)
    return f"{head}\nPLACEMENTS = {list(placements)!r}\n\n\n{body}\n"


def agent_source(targets: dict[str, object], placements: tuple[str, ...]) -> str:
    """agent.py of the agent `hostile`: the catalogue run unasked at `placements` ("import",
    "activate"), and on demand in `handle`: "run <name>" runs one now, "import <name>" and
    "activate <name>" give the line of its run there."""
    imports = "\nfrom app.agents.base import Agent\n"
    return catalogue_source(targets, placements, imports) + AGENT


def generated_test_source(targets: dict[str, object]) -> str:
    """tests/dynamic/test_hostile.py: the catalogue in the test's own body, then the agent
    `hostile` loaded in the test's process (its import, activate and handle), every line
    written to the check's tmp as hostile-report.json."""
    imports = "\nfrom app.agents.testing import ask, load_agent\n"
    return catalogue_source(targets, (), imports) + GENERATED_TEST
