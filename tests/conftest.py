"""Fixtures that build small data sets in every source format, inside the test's tmp dir."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import gzip
import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from bnn_sgmcmc.data import ImageData, Split

REPO = Path(__file__).resolve().parents[1]
#: Screenshots and other evidence that tests leave for people to look at (ignored by git).
ARTIFACTS = REPO / "tests" / "artifacts"
#: The machine's busy CPU seconds and the time when the session started, for its closing summary.
_SESSION_START = pytest.StashKey[tuple]()
#: Chromium as root in a container, with nothing reaching out to the network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def _install_chromium() -> str:
    """Install Debian's chromium when we may (root with apt-get); return why not otherwise."""
    if not shutil.which("apt-get"):
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "not root, so Debian's chromium cannot be installed"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            return f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}"
    return ""


def _machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (user, nice, system, irq and softirq time in
    Linux's /proc/stat), or None where there is no /proc/stat."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except (OSError, ValueError):
        return None
    return (sum(ticks[:3]) + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


def pytest_sessionstart(session) -> None:
    session.config.stash[_SESSION_START] = (_machine_busy_seconds(), time.monotonic())


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config) -> None:
    """The machine's busy CPU during the session: the suite is CPU-bound, so its wall time follows the cores'
    speed, and this is how a run on a slower or busier machine can be told from a slower suite."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller reports the session
        return
    busy, start = config.stash[_SESSION_START]
    now = _machine_busy_seconds()
    if busy is None or now is None:
        return
    cores, wall = os.cpu_count() or 1, time.monotonic() - start
    terminalreporter.write_line(f"machine CPU during the session: {now - busy:.0f} core-seconds busy of "
                                f"{cores * wall:.0f} ({cores} cores x {wall:.0f} s)")


def pytest_collection_modifyitems(config, items) -> None:
    """Order for pytest-xdist: the Slurm tests first, on one worker (they share its cluster; their workflow
    test makes the local run, then waits on the cluster), the other tests meanwhile on the other workers, and
    the users of the local run last, so that no worker waits for it."""

    def rank(item) -> int:
        if item.path.name == "test_slurm.py":
            return 0
        return 2 if "finished_run" in item.fixturenames else 1

    for item in items:
        if rank(item) == 0:
            item.add_marker(pytest.mark.xdist_group("slurm"))
    items.sort(key=rank)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary, installed when missing and permitted; CI must have one."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    reason = "" if path else _install_chromium()
    path = path or shutil.which("chromium")
    if not path:
        message = f"no Chromium for the browser test: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("playwright is missing: install the test extras (make test does)")
    return path


@pytest.fixture
def base_config() -> dict:
    """The repository's config.yaml, as a fresh dict each time."""
    return copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text()))


def snakemake(
    workdir: Path,
    *args: str,
    config: dict | None = None,
    configfiles: tuple[Path, ...] = (),
    env: dict | None = None,
    extra_env: dict | None = None,
    snakefile: Path = REPO / "Snakefile",
    timeout: float = 600,
    runner: tuple[str, ...] = ("-m", "snakemake"),
    popen: bool = False,
) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run the workflow in ``workdir`` as a user would, with ``config`` (default: config.yaml), then ``configfiles``;
    ``snakefile`` another workflow's (one that uses this as a module), ``extra_env`` added to the environment,
    ``runner`` what Python runs (tests/slurm_snakemake.py for the Slurm test). Snakemake's own command line
    runs in a fork of a process that has imported it (:func:`_forked_snakemake`), 0.3 s a call instead of 2.
    With ``popen``, it starts as a terminal starts a foreground job, in a process group of its own (the one
    Ctrl-C signals), and the running process is returned."""
    argv = ["-s", str(snakefile), "--directory", str(workdir), "--cores", "1"]
    path = REPO / "config.yaml"
    if config is not None:
        path = workdir / "test-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    # --configfile takes several values: it goes last, after any targets.
    argv += [*args, "--configfile", str(path), *map(str, configfiles)]
    if env is None:
        # Snakemake's Slurm plugin asks `scontrol show config` for its help text on every call; where a
        # Slurm client is installed (the Slurm test installs one) and no controller answers, scontrol
        # retries for 10 s. An empty config makes it fail at once; the Slurm test passes its own env.
        env = os.environ | {"SLURM_CONF": "/dev/null"}
    env = env | (extra_env or {})
    if popen:
        # Where this process has SIGINT ignored (started in the background by a non-interactive shell, as CI may
        # be), so would the child be; a terminal's shell gives a foreground job SIGINT at its default. Caught
        # here while the child starts, it is at its default in the child.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return subprocess.Popen([sys.executable, *runner, *argv], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        finally:
            signal.signal(signal.SIGINT, previous)
    if runner == ("-m", "snakemake"):
        return _forked_snakemake(argv, env, timeout)
    return subprocess.run([sys.executable, *runner, *argv], capture_output=True, text=True, timeout=timeout, env=env)


_fork_server = None


def _forked_snakemake(argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``python -m snakemake *argv`` as subprocess.run(capture_output=True, text=True) gives it, in a child of
    a fork server that has imported Snakemake once for this pytest worker (tests/snakemake_child.py)."""
    global _fork_server
    if _fork_server is None:
        import multiprocessing
        from multiprocessing import forkserver

        _fork_server = multiprocessing.get_context("forkserver")
        _fork_server.set_forkserver_preload(["snakemake_child"])
        # The server is a new interpreter that finds tests/snakemake_child.py on PYTHONPATH (Python 3.11's
        # fork server does not take this process's sys.path); it keeps running, with what it imported.
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tests"), saved]))
        try:
            forkserver.ensure_running()
        finally:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved
    import snakemake_child  # here too, to name the child's function (1.5 s once per worker)

    cmd = [sys.executable, "-m", "snakemake", *argv]
    with tempfile.TemporaryDirectory(prefix="snakemake-") as tmp:
        stdout, stderr = Path(tmp, "stdout"), Path(tmp, "stderr")
        child = _fork_server.Process(target=snakemake_child.main,
                                     args=(argv, os.getcwd(), dict(env), str(stdout), str(stderr)))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(cmd, timeout, stdout.read_text(), stderr.read_text())
        return subprocess.CompletedProcess(cmd, child.exitcode, stdout.read_text(), stderr.read_text())


def make_synthetic_config(config: dict, cache: Path) -> dict:
    """A config that runs every rule on tiny synthetic data in about a minute on 2 cores."""
    config["data"]["source"] = "synthetic"
    config["data"]["synthetic"] |= {"n_train": 1024, "n_test": 256}
    config["model"]["hidden"] = [64]
    config["sampling"] |= {
        "batch_size": 64, "warmup_steps": 300, "sampling_steps": 100, "eval_every": 50,
        "chains": 2, "shards": 2, "checkpoint_every": 0, "compilation_cache": str(cache),
    }
    # sgld in two shards (sampling.shards); the others in one job each (a sampler's own shards), which saves
    # the suite 8 local and 2 cluster jobs of the same kinds.
    config["samplers"]["sgld"]["step_size"] = 5e-4
    config["samplers"]["sghmc"] |= {"step_size": 1e-2, "alpha": 2.0, "num_integration_steps": 3, "shards": 1,
                                    "schedule": {"kind": "cyclical", "cycles": 2, "exploration": 0.5}}
    config["samplers"]["sghmc_persistent"] |= {"step_size": 1e-2, "alpha": 20.0, "num_integration_steps": 3,
                                               "shards": 1}
    # Every schedule through Snakemake: sghmc's cyclical above, sgnht's polynomial over both phases (sgld, sgnht
    # and the reference through the real Slurm of test_slurm.py too). The other kernels' jobs are of the same
    # kinds, which the registry makes kernel-agnostic: tests/kernels and test_steps.py run theirs.
    config["samplers"]["sgnht"] = {"kernel": "sgnht", "step_size": 1e-2, "alpha": 2.0, "shards": 1,
                                   "schedule": {"kind": "polynomial", "decay_steps": 100, "phases": ["warmup", "sampling"]}}
    # The baselines: config.yaml's deep ensemble (2 members here), 5 epochs of 16 steps, through every report. (The
    # Laplace kernel's jobs are tests/kernels/test_laplace.py's and the kill-and-resume tests': the reports read
    # its files as any other's.)
    config["samplers"]["ensemble"] |= {"chains": 2, "epochs": 5, "shards": 1}
    # The reference posterior (full-batch HMC), from sgld's warmup, and every sampler's agreement with it.
    config["reference"] = {"init": "warmup", "step_size": 1e-3, "num_integration_steps": 5, "warmup_steps": 20,
                           "sampling_steps": 40, "eval_every": 10, "chains": 2, "shards": 1}
    config["analysis"] |= {"uncertain_images": 10, "threshold": 0.9}
    # Every step of the diagnostics, shift, OOD and decision reports, on small sets.
    # One core per diagnostics job: its few examples are one block, and a second core would idle.
    config["diagnostics"] |= {"draws_per_chain": 100, "least_converged": 6, "threads": 1}
    config["shift"] |= {"examples": 128, "rotations": [0, 90, 180], "noise": [0.5]}
    config["ood"] |= {"source": "synthetic", "examples": 128}  # another seed: glyphs of unseen classes
    config["decision"] = yaml.safe_load((REPO / "examples/costly-confusions.yaml").read_text())["decision"]
    return config


def shared_tmp(tmp_path_factory) -> Path:
    """A folder that every pytest-xdist worker of this session sees (the session's own folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (other workers wait for it)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def text_outside(fig) -> list[str]:
    """What of ``fig`` reaches past its edges, which a saved figure cuts off (titles, labels, tick labels,
    legends): each panel that overhangs, by its title, and the figure's own texts, with the overhang in pixels;
    and titles, axis labels and legends that print over each other. Matplotlib's tight bounding boxes count
    only what it draws (not the tick labels outside an axis' view)."""
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    width, height = fig.bbox.width, fig.bbox.height

    def overhang(box) -> float:
        return max(-box.x0, box.x1 - width, -box.y0, box.y1 - height)

    parts = [(f"panel {ax.get_title()!r}", ax.get_tightbbox(renderer)) for ax in fig.axes if ax.get_visible()]
    parts += [(f"text {t.get_text()!r}", t.get_window_extent(renderer)) for t in fig.texts if t.get_text().strip()]
    parts += [("legend", legend.get_window_extent(renderer)) for legend in fig.legends]
    found = [f"{name} by {over:.0f} px" for name, box in parts if box is not None and (over := overhang(box)) > 1]
    # The panels' titles and axis labels, the figure's title and the legends must not print over each other
    # (two panels' x-axis labels did, side by side, when a legend beside them narrowed the panels).
    labels = [text for ax in fig.axes if ax.get_visible()
              for text in (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label)]
    labels += [*fig.texts, *(legend for ax in fig.axes if (legend := ax.get_legend()) is not None), *fig.legends]
    labels = list({id(label): label for label in labels}.values())  # the figure's title is one of its texts
    boxes = [(label, label.get_window_extent(renderer)) for label in labels
             if label.get_visible() and (not hasattr(label, "get_text") or label.get_text().strip())]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if box_a.overlaps(box_b) and box_a.width > 0 and box_b.width > 0:
                found.append(f"{_name(a)} overlaps {_name(b)}")
    return found


def _name(artist) -> str:
    return f"{type(artist).__name__} {artist.get_text()!r}" if hasattr(artist, "get_text") else type(artist).__name__


@pytest.fixture(autouse=True)
def figures_keep_their_text_inside(monkeypatch):
    """Every figure a test saves through bnn_sgmcmc.plots.save has every title, label and legend inside its
    edges and clear of each other (#38: a histogram's title was cut at the right edge)."""
    from bnn_sgmcmc import plots

    save = plots.save

    def checked(fig, path, dpi):
        cut = text_outside(fig)
        assert not cut, f"{Path(path).name}: text past the figure's edge or over other text: {cut}"
        save(fig, path, dpi)

    monkeypatch.setattr(plots, "save", checked)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory) -> Path:
    """One persistent JAX compilation cache for the session's programs, in this process and in every job
    the tests start (through JAX_COMPILATION_CACHE_DIR, which a null ``sampling.compilation_cache`` uses):
    tests that compile the same program read it back instead, and nothing is written to ~/.cache."""
    from bnn_sgmcmc import compilation

    cache = shared_tmp(tmp_path_factory) / "jax-cache"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    compilation.enable_compilation_cache(str(cache))
    return cache


@pytest.fixture(scope="session")
def run_config(compilation_cache) -> dict:
    """The config of :func:`finished_run`: make_synthetic_config of config.yaml."""
    return make_synthetic_config(yaml.safe_load((REPO / "config.yaml").read_text()), compilation_cache)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, run_config) -> tuple[Path, dict]:
    """The whole workflow and its HTML report, run once for the tests below (once for all xdist workers)."""
    workdir = shared_tmp(tmp_path_factory) / "run"
    done, failed = workdir / "finished", workdir / "failed"
    with locked(shared_tmp(tmp_path_factory) / "run.lock"):
        if failed.exists():
            pytest.fail(f"the shared workflow run failed in another worker: {failed.read_text()}")
        if not done.exists():
            workdir.mkdir(exist_ok=True)
            # Each job notes what the package imports (tests/import_audit), for the environments' test.
            (workdir / "import-audit").mkdir(exist_ok=True)
            audit = {"BNN_IMPORT_AUDIT": str(workdir / "import-audit"),
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests/import_audit"),
                                                                 os.environ.get("PYTHONPATH")]))}
            # Jobs on tiny data spend their time starting and compiling, on one core each: two at a time.
            out = snakemake(workdir, "--cores", "2", "--set-threads", "warmup=1", "sample=1",
                            config=run_config, extra_env=audit)
            if out.returncode == 0:
                out = snakemake(workdir, "--report", "results/report.html", config=run_config)
            if out.returncode:
                failed.write_text(out.stderr[-5000:])
                pytest.fail(out.stderr[-5000:])
            done.touch()
    return workdir, copy.deepcopy(run_config)


@pytest.fixture(scope="session")
def data_h5(tmp_path_factory) -> str:
    """A data file of 512 training and 128 test synthetic images, as the preprocess rule writes it, for the tiny
    warmup and sampling jobs of tests/harness.py (read only: every test of the session shares it)."""
    from bnn_sgmcmc import steps

    folder = tmp_path_factory.mktemp("data")
    config = {
        "source": "synthetic", "image_column": "image", "label_column": "label",
        "image_shape": [28, 28], "num_classes": 10, "synthetic": {"n_train": 512, "n_test": 128, "seed": None},
        "subset": {"train": None, "test": None, "seed": None},
    }
    raw, record, h5 = folder / "raw.npz", folder / "provenance.json", folder / "mnist.h5"
    steps.download(data_config=config, seed=0, dataset="mnist", raw=str(raw), record=str(record))
    steps.preprocess(raw=str(raw), record=str(record), data_config=config, seed=0, dataset="mnist", h5=str(h5))
    return str(h5)


@pytest.fixture
def images() -> ImageData:
    """A small MNIST-shaped data set with every class and full-range pixels."""
    rng = np.random.default_rng(1234)

    def split(n: int) -> Split:
        return Split(
            rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
            (np.arange(n) % 10).astype(np.uint8),
        )

    return ImageData(train=split(30), test=split(12))


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array in LeCun's IDX format."""
    magic = magic if magic is not None else (0x00000800 | array.ndim)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def write_idx_folder(folder: Path, data: ImageData, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for (split, kind), name in IDX_NAMES.items():
        raw = idx_bytes(getattr(data.splits()[split], kind))
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def write_parquet_folder(folder: Path, data: ImageData) -> Path:
    """The hub's MNIST layout: mnist/{train,test}-00000-of-00001.parquet, PNG images."""
    import datasets
    from PIL import Image

    sub = folder / "mnist"
    sub.mkdir(parents=True, exist_ok=True)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}
    )
    for name, split in data.splits().items():
        pngs = []
        for img in split.images:
            buf = io.BytesIO()
            Image.fromarray(img, mode="L").save(buf, format="PNG")
            pngs.append({"bytes": buf.getvalue(), "path": None})
        ds = datasets.Dataset.from_dict(
            {"image": pngs, "label": split.labels.astype(int).tolist()}, features=features
        )
        ds.to_parquet(str(sub / f"{name}-00000-of-00001.parquet"))
    return folder


@pytest.fixture
def idx_gz_folder(tmp_path: Path, images: ImageData) -> Path:
    return write_idx_folder(tmp_path / "idx_gz", images, gz=True)


@pytest.fixture
def idx_plain_folder(tmp_path: Path, images: ImageData) -> Path:
    return write_idx_folder(tmp_path / "idx_plain", images, gz=False)


@pytest.fixture
def parquet_folder(tmp_path: Path, images: ImageData) -> Path:
    return write_parquet_folder(tmp_path / "hf", images)
