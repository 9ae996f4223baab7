"""Generate book/api.md, the API reference, from the docstrings of the public API.

    .venv/bin/python tools/gen_api.py            # rewrites book/api.md
    .venv/bin/python tools/gen_api.py --check    # exit 1 if book/api.md is out of date

The page is static markdown (tables of signatures and one-line summaries) so that the book
needs no sphinx autodoc; re-run this script after changing a public signature or docstring.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECTIONS = [
    ("ctcnet", "Top level: models, weights, runtime",
     ["build_model", "load_model", "CTCNet", "CTCNetConfig", "PRESETS", "load_official_checkpoint",
      "export_official_state_dict", "CTCNetError", "CheckpointError", "optimize_for_inference",
      "optimize_for_training", "grad_scaler_for", "pick_device", "autocast"]),
    ("ctcnet.runtime", "Runtime helpers",
     ["choose_precision", "cpu_has_fast_bf16", "fold_batchnorm", "enable_checkpointing",
      "disable_checkpointing"]),
    ("ctcnet.model", "Initialisation", ["reference_init_"]),
    ("ctcnet.model", "Paper modules (one class per module of Fig. 2)",
     ["PaperUnit", "LocalBlock", "ResidualUnit", "ChannelAttention", "Hourglass", "FSAU", "MDTA",
      "GDFN", "TransformerBlock", "LGCM", "FEU", "FRM", "Downsample", "Upsample",
      "CrossScaleResampler", "MFFU"]),
    ("ctcnet.errors", "Errors (one root) and the one-line message", None),
    ("ctcnet.pixels", "Pixels: images to tensors and back", None),
    ("ctcnet.metrics", "Metrics", None),
    ("ctcnet.lpips", "Metrics: LPIPS", None),
    ("ctcnet.stats", "Statistics of a difference", None),
    ("ctcnet.data.degradation", "Data: degradation and the reference augmentation", None),
    ("ctcnet.data.augment", "Data: stronger augmentation", None),
    ("ctcnet.data.datasets", "Data: the dataset", ["FaceSRDataset"]),
    ("ctcnet.data.sampling", "Data: which face goes into which batch slot of which step", None),
    ("ctcnet.data.imageio", "Data: reading, cropping and writing images", None),
    ("ctcnet.data.fetch", "Data: downloading and verifying files", None),
    ("ctcnet.data.prepare", "Data: preparing CelebA, FFHQ and Helen",
     ["prepare_dataset", "dataset_info", "celeba_face_crop"]),
    ("ctcnet.data.offline_faces", "The offline face set",
     ["build_offline_faces", "offline_faces_info", "load_manifest", "default_root"]),
    ("ctcnet.weights", "Weights: which file a name means, loading, checkpoints",
     ["resolve_weights", "load_model", "default_weights_path", "save_checkpoint",
      "read_checkpoint", "model_from_checkpoint", "strip_for_release", "checkpoint_digest",
      "check_finite"]),
    ("ctcnet.weights.official", "Weights: the authors' key map", None),
    ("ctcnet.weights.download", "Weights: the authors' released weights", None),
    ("ctcnet.train", "Training", ["TrainConfig", "fit", "Run", "load_data", "check_config"]),
    ("ctcnet.training_data", "Training: data and loader", None),
    ("ctcnet.run_folder", "Training: the run folder", None),
    ("ctcnet.distributed", "Training: several processes (torchrun)", None),
    ("ctcnet.evaluate", "Evaluation", None),
    ("ctcnet.strips", "Comparison strips", None),
    ("ctcnet.faces", "Face detection and alignment", None),
    ("ctcnet.face_regions", "Face regions from five landmarks", None),
    ("ctcnet.upscale", "Upscaling photos", None),
    ("ctcnet.analysis", "Analysis (cost, receptive fields, attributions, attention)", None),
    ("ctcnet.course.schematic", "Module schematics (drawn from the forward pass)", None),
    ("ctcnet.course.plotting", "Analysis figures", None),
    ("ctcnet.course.book", "Book helpers", None),
    ("ctcnet.course.explorer", "Interactive explorer (chapter 15)", None),
]


def rst_to_md(text: str) -> str:
    text = re.sub(r":(?:class|func|meth|attr|data|mod|obj):`~?([^`]+)`",
                  lambda m: "`" + m.group(1).split(".")[-1] + "`", text)
    text = re.sub(r"``(.+?)``(?!`)",
                  lambda m: f"`` {m.group(1)} ``" if "`" in m.group(1) else f"`{m.group(1)}`",
                  text)
    return " ".join(text.split())


def summary(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.split("\n\n")[0]
    return rst_to_md(first)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def signature(name: str, obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    parts = []
    for p in sig.parameters.values():
        if p.name == "self" or p.name.startswith("_"):
            continue
        if p.kind is p.VAR_POSITIONAL:
            parts.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            parts.append("**" + p.name)
        elif p.default is not p.empty:
            default = repr(p.default)
            parts.append(f"{p.name}={default if len(default) < 25 else '...'}")
        else:
            parts.append(p.name)
    text = f"{name}({', '.join(parts)})"
    return text if len(text) <= 110 else f"{name}(...)"


def section(module_name: str, title: str, names: list[str] | None) -> list[str]:
    module = importlib.import_module(module_name)
    names = names or list(getattr(module, "__all__", []))
    lines = [f"## {title}", "", f"Module `{module_name}`.", "", "| name | description |",
             "|---|---|"]
    for name in names:
        obj = getattr(module, name)
        if isinstance(obj, dict):
            sig = name
            desc = f"dict of {len(obj)} entries: " + ", ".join(f"`{k}`" for k in obj)
        elif inspect.isclass(obj) or callable(obj):
            sig = signature(name, obj)
            desc = summary(obj)
        elif isinstance(obj, (set, frozenset)):
            # sorted: a set's repr order changes with the hash seed, and --check must be stable
            sig, desc = name, "{" + ", ".join(repr(v) for v in sorted(obj)) + "}"
        else:
            sig, desc = name, rst_to_md(repr(obj))
        lines.append(f"| `{cell(sig)}` | {cell(desc)} |")
    return lines + [""]


def config_fields() -> list[str]:
    from ctcnet.model import PRESETS, CTCNetConfig

    doc = inspect.getdoc(CTCNetConfig) or ""
    described: dict[str, str] = {}
    keys: list[str] = []
    for line in doc.splitlines():
        m = re.match(r"([a-z_, ]+) : (.*)", line)
        if m:
            keys = [k.strip() for k in m.group(1).split(",")]
            for key in keys:
                described[key] = m.group(2)
        elif line.startswith("    ") and keys:
            for key in keys:
                described[key] += " " + line.strip()
        else:
            keys = []
    described = {k: rst_to_md(v) for k, v in described.items()}
    lines = ["## `CTCNetConfig` fields and presets", "",
             "| field | official | reduced | tiny | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(CTCNetConfig):
        values = [f"`{getattr(PRESETS[p], f.name)}`" for p in ("official", "reduced", "tiny")]
        lines.append(f"| `{f.name}` | {' | '.join(values)} | {cell(described.get(f.name, ''))} |")
    return lines + [""]


def _flags(p: argparse.ArgumentParser) -> list[str]:
    """Each option once: its long form, or both forms of an on/off flag (``--x/--no-x``)."""
    return ["/".join(a.option_strings) if isinstance(a, argparse.BooleanOptionalAction)
            else a.option_strings[-1] for a in p._actions
            if a.option_strings and a.option_strings[-1] != "--help"]


def cli() -> list[str]:
    from ctcnet.cli import build_parser

    parser = build_parser()
    lines = ["## Command line", "",
             "`ctcnet COMMAND --help` (or `python -m ctcnet ...`) prints the full help.", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    rows = [("ctcnet " + cmd, helps.get(cmd, ""), p) for cmd, p in sub.choices.items()]
    lines += ["| command | what it does | options |", "|---|---|---|"]
    for cmd, help_text, p in rows:
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for name, q in nested[0].choices.items():
                opts = _flags(q)
                nh = {a.dest: a.help for a in nested[0]._choices_actions}
                lines.append(f"| `{cmd} {name}` | {cell(rst_to_md(nh.get(name) or ''))} | "
                             f"{cell(', '.join(f'`{o}`' for o in opts))} |")
            continue
        opts = _flags(p)
        lines.append(f"| `{cmd}` | {cell(rst_to_md(help_text or ''))} | "
                     f"{cell(', '.join(f'`{o}`' for o in opts))} |")
    return lines + [""]


def render() -> str:
    lines = [
        "# API reference",
        "",
        "The public API of the `ctcnet` package: signatures (parameter names and defaults) and the",
        "first paragraph of each docstring. Every object has a full docstring with parameters,",
        "shapes and return values: use `help(obj)` or `obj?` in a notebook.",
        "",
        "```{note}",
        "This page is generated from the docstrings by `python tools/gen_api.py` and committed as",
        "static text (the book is built without sphinx autodoc). Re-run the script after changing",
        "a public signature; `python tools/gen_api.py --check` fails when the page is stale.",
        "```",
        "",
    ]
    lines += config_fields()
    for module_name, title, names in SECTIONS:
        lines += section(module_name, title, names)
    lines += cli()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if book/api.md is stale")
    parser.add_argument("--out", default=str(ROOT / "book" / "api.md"))
    args = parser.parse_args(argv)
    text = render()
    out = Path(args.out)
    if args.check:
        if not out.is_file() or out.read_text() != text:
            print(f"{out} is out of date: run python tools/gen_api.py", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
