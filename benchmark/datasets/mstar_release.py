"""Build the authors' MSTAR layouts (SOC, EOC-1, EOC-2) from the public MSTAR release.

The public release (AFRL / DARPA Sensor Data Management System) comes as CD folders, e.g.::

    MSTAR_PUBLIC_TARGETS_CHIPS_T72_BMP2_BTR70_SLICY/TARGETS/{TRAIN/17_DEG,TEST/15_DEG}/
        <class>/<serial>/HBxxxxx.yyy.jpeg
    MSTAR_PUBLIC_MIXED_TARGETS_CD1|CD2/<depression>_DEG/COL1|COL2/SCENE1..3/<class>/HBxxxxx...
    MSTAR_PUBLIC_T_72_VARIANTS_CD1|CD2/<depression>_DEG/COL1|COL2/SCENE1/<serial>/HBxxxxx...

with chips converted to JPEG by the MSTAR tools. A chip file keeps the raw chip's name plus a
JPEG suffix (``HBnnnnn.ttt.jpeg``: image number, 3-digit target code); other JPEGs, such as the
CDs' own browse images ``HBnnnnn.JPG`` beside the raw chips, are skipped and reported. Nothing
here depends on the exact CD names: every chip under ``--data`` is described by its path alone:

- depression: the first folder named ``<n>_DEG`` (any case);
- class: the deepest folder whose name is a known class spelling (``BTR_60`` and ``BTR60`` are
  ``BTR60``, ``ZSU_23_4`` is ``ZSU234``, ``BRDM_2`` is ``BRDM2``, ...); under a folder whose
  name contains ``T_72_VARIANTS`` / ``T72_VARIANTS`` the class is ``T72``;
- serial: a folder below the class named ``SN_<x>`` (``x``), or, in the T-72 variants CDs, the
  folder holding the chip (``A04``, ``SN_812`` -> ``812``, ...); chips with no serial folder
  (the mixed-target CDs: one vehicle per class) have serial ``""``, which any serial rule accepts.

A protocol (:data:`PROTOCOLS`) selects, per split, a depression set and per class the accepted
serials, from ``SCENE1`` (or no scene folder) only: the 30 / 45 deg ``SCENE2`` / ``SCENE3``
folders (BRDM_2, ZSU_23_4, T72 A64) are the literature's EOC "scene" sets, not EOC-1. A chip
name (the file name without its JPEG suffix) counts once per (split, class): a
second copy in another folder is skipped (first in sorted path order; reported). Outputs are hard
links (copies when linking fails or with ``copy=True``) named ``<chip>.jpeg``, so the source is
only read. Each layout gets a ``manifest.json``: protocol definition, counts per split and class,
and per file its sha256 and source path relative to ``--data``.

Standard counts (train / test, the usual literature definitions; printed beside what was found):
SOC 2,747 / 2,425; EOC-1 1,195 / 1,151; EOC-2 (configuration) 996 / 2,710; EOC-2 (version)
996 / 3,569. EOC-2 composition follows the common literature definition (e.g. Chen et al.,
A-ConvNets, IEEE TGRS 2016): train BMP2 SN_9563, BRDM2, BTR70, T72 SN_132 at 17 deg; test the
T72 configuration variants (S7, A32, A62, A63, A64) or the BMP2 / T72 version variants (BMP2
9566, C21; T72 812, A04, A05, A07, A10) at 15 and 17 deg, labelled as their class.

Size: over 400 lines because the release's folder names, the four layouts' class and serial
tables, and the one walk that sorts chips into them belong together; the tables are data, not
logic.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarjepa.benchmark.core.errors import SarjepaError
from sarjepa.benchmark.datasets.mstar import SOC_COUNTS

JPEG_SUFFIXES = (".jpeg", ".jpg")
CLASS_SPELLINGS = {
    "2S1": "2S1", "BMP2": "BMP2", "BMP_2": "BMP2", "BRDM2": "BRDM2", "BRDM_2": "BRDM2",
    "BTR60": "BTR60", "BTR_60": "BTR60", "BTR70": "BTR70", "BTR_70": "BTR70", "D7": "D7",
    "T62": "T62", "T_62": "T62", "T72": "T72", "T_72": "T72", "ZIL131": "ZIL131",
    "ZIL_131": "ZIL131", "ZSU234": "ZSU234", "ZSU_23_4": "ZSU234", "SLICY": "SLICY",
}  # fmt: skip
_DEG = re.compile(r"^(\d+)_?DEG$", re.IGNORECASE)
_SCENE = re.compile(r"^SCENE(\d+)$", re.IGNORECASE)
#: a converted chip keeps the raw chip's name, ``HBnnnnn.ttt`` (image number, 3-digit target
#: code), plus a JPEG suffix; the CDs' own browse images (``HBnnnnn.JPG``, no target code, next
#: to the raw chips) and other JPEGs do not match
_CHIP_FILE = re.compile(r"\.\d{3}\.jpe?g$", re.IGNORECASE)
_OTHER_CHIP_FILE = re.compile(r"\.\d{3}\.(png|tiff?)$", re.IGNORECASE)
SOC_CLASSES = ("BMP2", "BTR70", "T72", "BTR60", "2S1", "BRDM2", "D7", "T62", "ZIL131", "ZSU234")
ANY = None  # any serial


@dataclass(frozen=True)
class Chip:
    """One chip of the release: path relative to the release, class, serial, depression (deg)
    and scene (the ``SCENE<n>`` folder's n; 0 without one, as in the TARGETS CD)."""

    rel: str
    cls: str
    serial: str
    depression: int
    scene: int = 0

    @property
    def name(self) -> str:
        """The chip's name: the file name without its JPEG suffix (e.g. ``HB03333.000``)."""
        base = self.rel.rsplit("/", 1)[-1]
        return base[: base.lower().rfind(".jp")]


def _split_rule(depressions: tuple[int, ...], serials: dict[str, tuple[str, ...] | None]) -> dict:
    # SCENE1 only (or no scene folder): the 30 / 45 deg SCENE2 / SCENE3 collections (BRDM_2,
    # ZSU_23_4, T72 A64) are the EOC "scene" sets, not part of these protocols
    return {"depressions": list(depressions), "scenes": [1], "classes": serials}


_SOC_TRAIN = {c: ANY for c in SOC_CLASSES} | {"BMP2": ("9563",), "BTR70": ("C71",), "T72": ("132",)}
_EOC2_TRAIN = {"BMP2": ("9563",), "BRDM2": ANY, "BTR70": ("C71",), "T72": ("132",)}
#: protocol -> dataset folder, labels, split rules (depressions, class -> serials or None = any),
#: standard counts (train, test) per class
PROTOCOLS: dict[str, dict[str, Any]] = {
    "soc": {
        "dataset": "MSTAR_SOC",
        "labels": list(SOC_CLASSES),
        "TRAIN": _split_rule((17,), _SOC_TRAIN),
        "TEST": _split_rule((15,), _SOC_TRAIN),
        "standard": SOC_COUNTS,
    },
    "eoc1": {
        "dataset": "MSTAR_EOC1",
        "labels": ["2S1", "BRDM2", "T72", "ZSU234"],
        "TRAIN": _split_rule((17,), {"2S1": ANY, "BRDM2": ANY, "T72": ("A64",), "ZSU234": ANY}),
        "TEST": _split_rule((30,), {"2S1": ANY, "BRDM2": ANY, "T72": ("A64",), "ZSU234": ANY}),
        "standard": {
            "2S1": (299, 288),
            "BRDM2": (298, 287),
            "T72": (299, 288),
            "ZSU234": (299, 288),
        },
    },
    "eoc2c": {
        "dataset": "MSTAR_EOC2C",
        "labels": ["BMP2", "BRDM2", "BTR70", "T72"],
        "TRAIN": _split_rule((17,), _EOC2_TRAIN),
        "TEST": _split_rule((15, 17), {"T72": ("S7", "A32", "A62", "A63", "A64")}),
        "standard": {"BMP2": (233, 0), "BRDM2": (298, 0), "BTR70": (233, 0), "T72": (232, 2710)},
    },
    "eoc2v": {
        "dataset": "MSTAR_EOC2V",
        "labels": ["BMP2", "BRDM2", "BTR70", "T72"],
        "TRAIN": _split_rule((17,), _EOC2_TRAIN),
        "TEST": _split_rule(
            (15, 17), {"BMP2": ("9566", "C21"), "T72": ("812", "A04", "A05", "A07", "A10")}
        ),
        "standard": {"BMP2": (233, 857), "BRDM2": (298, 0), "BTR70": (233, 0), "T72": (232, 2712)},
    },
}


def _serial(name: str) -> str:
    up = name.upper()
    return up[3:] if up.startswith("SN_") else up


def describe_chip(rel: str) -> Chip | None:
    """A chip from its path relative to the release (``None`` if no class or depression)."""
    parts = rel.split("/")
    folders = parts[:-1]
    depression = next((int(m.group(1)) for p in folders if (m := _DEG.match(p))), None)
    scene = next((int(m.group(1)) for p in folders if (m := _SCENE.match(p))), 0)
    cls, cls_at = None, -1
    for i, p in enumerate(folders):
        key = p.upper().replace("-", "_")
        if key in CLASS_SPELLINGS:
            cls, cls_at = CLASS_SPELLINGS[key], i
    serial = ""
    if cls is not None:
        below = [p for p in folders[cls_at + 1 :] if p.upper().startswith("SN_")]
        serial = _serial(below[0]) if below else ""
    elif any("T_72_VARIANTS" in p.upper() or "T72_VARIANTS" in p.upper() for p in folders):
        cls, serial = "T72", _serial(folders[-1]) if folders else ""
    if cls is None or depression is None:
        return None
    return Chip(rel, cls, serial, depression, scene)


def is_chip_file(name: str) -> bool:
    """True for a converted chip's file name, ``<raw chip name>.jpeg`` (e.g. ``HB03333.003.jpeg``;
    ``.jpg`` and any case too); False for the CDs' browse images such as ``HB03333.JPG``."""
    return bool(_CHIP_FILE.search(name))


def scan_release(src: str | os.PathLike) -> tuple[list[Chip], list[str]]:
    """All JPEG chips under ``src`` (sorted walk) and the JPEG paths that are not used: no
    class or depression folder, or no MSTAR target code in the name (browse images)."""
    root = Path(src)
    if not root.is_dir():
        raise SarjepaError(f"MSTAR release folder not found: '{src}'")
    chips, unplaced, non_jpeg = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            if not f.lower().endswith(JPEG_SUFFIXES):
                if _OTHER_CHIP_FILE.search(f):
                    non_jpeg.append(f)
                continue
            rel = Path(dirpath, f).relative_to(root).as_posix()
            chip = describe_chip(rel) if is_chip_file(f) else None
            (chips.append(chip) if chip else unplaced.append(rel))
    if not chips and non_jpeg:
        raise SarjepaError(
            f"the chips under '{src}' are not JPEGs ({len(non_jpeg)} such as {non_jpeg[0]}): the "
            "MSTAR layouts are read as *.jpeg, as the authors' readers do; convert the raw chips "
            "with the MSTAR tools' mstar2jpeg (HBnnnnn.ttt -> HBnnnnn.ttt.jpeg)"
        )
    if not chips:
        other = f" (only {len(unplaced)} other JPEGs, e.g. {unplaced[0]})" if unplaced else ""
        raise SarjepaError(
            f"no MSTAR JPEG chips (<n>_DEG/.../<class>/.../HBnnnnn.ttt.jpeg) found under '{src}'"
            f"{other}; convert the release's raw chips to JPEG with the MSTAR tools first"
        )
    return chips, unplaced


def _accepts(rule: dict, chip: Chip) -> bool:
    if chip.depression not in rule["depressions"] or chip.cls not in rule["classes"]:
        return False
    if chip.scene and chip.scene not in rule["scenes"]:
        return False
    serials = rule["classes"][chip.cls]
    return serials is ANY or chip.serial == "" or chip.serial in serials


def select(chips: list[Chip], protocol: str) -> tuple[dict[str, list[Chip]], int]:
    """Chips per split (``TRAIN``, ``TEST``) of a protocol, one per chip name and class, and
    the number of duplicates skipped."""
    spec = PROTOCOLS[protocol]
    out: dict[str, list[Chip]] = {}
    dups = 0
    for split in ("TRAIN", "TEST"):
        seen: set[tuple[str, str]] = set()
        out[split] = []
        for chip in chips:
            if not _accepts(spec[split], chip):
                continue
            key = (chip.cls, chip.name)
            if key in seen:
                dups += 1
                continue
            seen.add(key)
            out[split].append(chip)
    return out, dups


def check_complete(protocol: str, chosen: dict[str, list[Chip]], src: str) -> None:
    """Raise naming the first (split, class) of the protocol with no chip at all."""
    spec = PROTOCOLS[protocol]
    for split in ("TRAIN", "TEST"):
        have = Counter(c.cls for c in chosen[split])
        for cls, serials in spec[split]["classes"].items():
            if have[cls]:
                continue
            degs = " or ".join(f"{d}_DEG" for d in spec[split]["depressions"])
            which = "" if serials is ANY else f" serial {'/'.join(serials)}"
            where = release_location(cls, spec[split]["depressions"], serials)
            raise SarjepaError(
                f"MSTAR release at '{src}' lacks {degs} chips of {cls}{which} needed for "
                f"{spec['dataset']}/{split} (expected under {where})"
            )


_TARGETS_CD = "MSTAR_PUBLIC_TARGETS_CHIPS_T72_BMP2_BTR70_SLICY/TARGETS"
_RELEASE_FOLDER = {"BTR60": "BTR_60", "BRDM2": "BRDM_2", "ZSU234": "ZSU_23_4"}


def release_location(cls: str, depressions: list[int], serials: tuple[str, ...] | None) -> str:
    """Where the public release keeps a class's chips at these depressions (for messages), e.g.
    ``MSTAR_PUBLIC_MIXED_TARGETS_CD1/15_DEG/COL1/SCENE1/BTR_60/``."""
    out = []
    for deg in depressions:
        if cls in ("BMP2", "BTR70", "T72") and deg in (15, 17):
            split = "TRAIN" if deg == 17 else "TEST"
            sns = [x for x in (serials or ("*",)) if not x.startswith("A")]
            out += [f"{_TARGETS_CD}/{split}/{deg}_DEG/{cls}/SN_{x}/" for x in sns]
        if cls == "T72":
            cd = 1 if deg in (15, 45) else 2
            sns = [x for x in (serials or ("A*",)) if x.startswith("A")]
            out += [f"MSTAR_PUBLIC_T_72_VARIANTS_CD{cd}/{deg}_DEG/COL2/SCENE1/{x}/" for x in sns]
        elif cls not in ("BMP2", "BTR70"):
            cd = 1 if deg in (15, 45) else 2
            col = 1 if cls == "BTR60" else 2
            name = _RELEASE_FOLDER.get(cls, cls)
            out.append(f"MSTAR_PUBLIC_MIXED_TARGETS_CD{cd}/{deg}_DEG/COL{col}/SCENE1/{name}/")
    return " or ".join(out) if out else f".../<n>_DEG/.../{cls}/"


def _place(src: Path, dst: Path, copy: bool) -> str:
    """Hard-link (or copy) ``src`` to ``dst``; returns ``"link"`` or ``"copy"``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(src, dst)
            return "link"
        except OSError:
            pass  # another filesystem, or links not allowed: copy
    shutil.copy2(src, dst)
    return "copy"


def _manifest(protocol: str, chosen: dict[str, list[Chip]], files: list[dict], dups: int) -> dict:
    from sarjepa.benchmark.core.provenance import code_version

    spec = PROTOCOLS[protocol]
    counts = {s: dict(sorted(Counter(c.cls for c in chosen[s]).items())) for s in chosen}
    rules = {
        s: {
            "depressions": spec[s]["depressions"],
            "scenes": spec[s]["scenes"],
            "classes": {k: "any" if v is ANY else list(v) for k, v in spec[s]["classes"].items()},
        }
        for s in ("TRAIN", "TEST")
    }
    return {
        "format": "sarjepa-mstar-layout/1",
        "dataset": spec["dataset"],
        "protocol": protocol,
        "definition": rules,
        "standard_counts": {k: list(v) for k, v in spec["standard"].items()},
        "counts": counts,
        "total": {s: len(chosen[s]) for s in chosen},
        "duplicates_skipped": dups,
        "code_version": code_version(),
        "files": files,
    }


def build_layout(
    src: str | os.PathLike,
    out_root: str | os.PathLike,
    protocol: str = "soc",
    copy: bool = False,
    chips: list[Chip] | None = None,
    log=print,
) -> dict:
    """Write ``out_root/<dataset>/{TRAIN,TEST}/<class>/<chip>.jpeg`` + ``manifest.json``.

    The layout is assembled in a temporary sibling folder and renamed into place when complete,
    so an interrupted run never leaves a folder that looks finished. An existing layout whose
    manifest lists the same source files is kept as it is.

    Returns:
        The manifest (``files`` included).
    """

    if protocol not in PROTOCOLS:
        from sarjepa.benchmark.core.errors import unknown

        raise unknown("MSTAR protocol", protocol, PROTOCOLS)
    src_p, spec = Path(src), PROTOCOLS[protocol]
    chips = chips if chips is not None else scan_release(src_p)[0]
    chosen, dups = select(chips, protocol)
    check_complete(protocol, chosen, str(src))
    final = Path(out_root) / spec["dataset"]
    wanted = sorted(c.rel for s in chosen.values() for c in s)
    if final.exists():
        old = _read_manifest(final)
        if old is not None and sorted(f["source"] for f in old["files"]) == wanted:
            log(f"{final}: already built from the same {len(wanted)} chips, kept")
            return old
        raise SarjepaError(
            f"'{final}' exists and was not built from these chips; remove it or choose --out"
        )
    placements = [(f"{s}/{c.cls}/{c.name}.jpeg", c) for s in ("TRAIN", "TEST") for c in chosen[s]]
    manifest, how = _assemble(
        src_p, final, placements, copy, lambda files: _manifest(protocol, chosen, files, dups)
    )
    log(f"{final}: {len(placements)} chips ({how['link']} hard links, {how['copy']} copies)")
    return manifest


def _assemble(
    src: Path, final: Path, placements: list[tuple[str, Chip]], copy: bool, manifest_of
) -> tuple[dict, Counter]:
    """Place ``(path under final, chip)`` pairs into a temporary sibling of ``final``, write
    ``manifest_of(files)`` as its ``manifest.json`` and rename it to ``final`` (an empty
    ``final`` is replaced); on any error the temporary folder is removed and ``final`` is
    untouched. ``files`` lists ``{"path", "source", "sha256"}`` per placed chip.

    Returns:
        ``(manifest, Counter of "link" / "copy")``.
    """
    from sarjepa.benchmark.core.io import atomic_write_json
    from sarjepa.benchmark.core.provenance import file_sha256

    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    files, how = [], Counter()
    try:
        for rel, c in placements:
            how[_place(src / c.rel, tmp / rel, copy)] += 1
            files.append({"path": rel, "source": c.rel, "sha256": file_sha256(tmp / rel)})
        manifest = manifest_of(files)
        atomic_write_json(manifest, tmp / "manifest.json")
        if final.exists():
            final.rmdir()  # empty: callers refuse a folder with content
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest, how


def _read_manifest(folder: Path) -> dict | None:
    import json

    try:
        data = json.loads((folder / "manifest.json").read_text())
        return data if isinstance(data.get("files"), list) else None
    except (OSError, ValueError, AttributeError):
        return None


def build_pool(
    src: str | os.PathLike,
    pool: str | os.PathLike,
    protocol: str = "soc",
    copy: bool = False,
    chips: list[Chip] | None = None,
    log=print,
) -> dict:
    """Every chip of the release outside the protocol's test set (by chip name), at its source
    path under ``pool`` (JPEG suffix ``.jpeg``), plus ``manifest.json``. Unlabeled: for
    ``sarjepa pretrain --data POOL``.
    """

    src_p, pool_p = Path(src), Path(pool)
    chips = chips if chips is not None else scan_release(src_p)[0]
    test_names = {c.name for c in select(chips, protocol)[0]["TEST"]}
    keep, seen = [], set()
    for c in chips:
        if c.name in test_names or c.name in seen:
            continue
        seen.add(c.name)
        keep.append(c)
    if pool_p.exists() and any(pool_p.iterdir()):
        old = _read_manifest(pool_p)
        wanted = sorted(c.rel for c in keep)
        if old is not None and sorted(f["source"] for f in old["files"]) == wanted:
            log(f"{pool_p}: pool already built from the same {len(keep)} chips, kept")
            return old
        raise SarjepaError(f"pool folder '{pool_p}' is not empty; remove it or choose another")
    from sarjepa.benchmark.core.provenance import code_version

    placements = [(c.rel[: c.rel.lower().rfind(".jp")] + ".jpeg", c) for c in keep]

    def manifest_of(files: list[dict]) -> dict:
        return {
            "format": "sarjepa-mstar-pool/1",
            "protocol": protocol,
            "excluded": f"the {len(test_names)} test chips of {PROTOCOLS[protocol]['dataset']}",
            "layout": "every chip at its path in the release (.jpeg suffix), unlabeled",
            "total": len(files),
            "counts": dict(sorted(Counter(c.cls for c in keep).items())),
            "code_version": code_version(),
            "files": files,
        }

    # assembled beside the pool and renamed when complete, as the layouts are
    manifest, how = _assemble(src_p, pool_p, placements, copy, manifest_of)
    log(f"{pool_p}: {len(placements)} pool chips ({how['link']} hard links, {how['copy']} copies)")
    return manifest


def _cd_folder(rel: str) -> str:
    """The release folder (``MSTAR_PUBLIC_...``) a chip path lies in, else its first folder."""
    parts = rel.split("/")[:-1]
    return next((p for p in parts if p.upper().startswith("MSTAR_PUBLIC")), parts[0])


def summary_table(chips: list[Chip], unplaced: list[str]) -> str:
    """What the release holds: chips per class and depression (serials listed)."""
    by: dict[tuple[str, int], Counter] = {}
    for c in chips:
        key = (c.serial or "-") + (f" SCENE{c.scene}" if c.scene > 1 else "")
        by.setdefault((c.cls, c.depression), Counter())[key] += 1
    lines = [f"found {len(chips)} chips:"]
    for cd, n in sorted(Counter(_cd_folder(c.rel) for c in chips).items()):
        lines.append(f"  {cd}: {n}")
    for (cls, dep), serials in sorted(by.items()):
        detail = ", ".join(f"{s} {n}" for s, n in sorted(serials.items()))
        lines.append(f"  {cls:7s} {dep:2d} deg: {sum(serials.values()):5d}  ({detail})")
    browse = [u for u in unplaced if not is_chip_file(u.rsplit("/", 1)[-1])]
    placed = [u for u in unplaced if is_chip_file(u.rsplit("/", 1)[-1])]
    if browse:
        lines.append(
            f"  {len(browse)} JPEGs skipped: no MSTAR target code in the name (the CDs' browse "
            f"images, not converted chips), e.g. {browse[0]}"
        )
    if placed:
        lines.append(
            f"  {len(placed)} JPEGs without a class or depression folder, e.g. {placed[0]}"
        )
    return "\n".join(lines)


def counts_report(manifest: dict) -> list[str]:
    """Lines comparing the built counts with the standard ones (``!`` marks a difference)."""
    out = []
    for cls, (std_tr, std_te) in manifest["standard_counts"].items():
        tr = manifest["counts"]["TRAIN"].get(cls, 0)
        te = manifest["counts"]["TEST"].get(cls, 0)
        mark = "" if (tr, te) == (std_tr, std_te) else "   ! standard: " + f"{std_tr} / {std_te}"
        out.append(f"  {cls:7s} train {tr:4d}  test {te:4d}{mark}")
    return out
