#!/usr/bin/env python3
"""A stand-in for ClamAV's official database: the same mix of signature types in about the same numbers.

    bench/officialdb.py [--scale 1.0] [--seed 1] [--out DIR] [--force]

No machine here can download main.cvd / daily.cvd, so this writes, deterministically from --seed,
plain-text ClamAV databases whose kinds and counts follow the official set (main about 3.29M, daily
about 0.36M signatures in 2026; see docs/benchmarks.md, "Official-scale stand-in"). At --scale 1.0:

  standin.hdb  1,200,000  file MD5 hashes             MD5:Size:Name
  standin.hsb    250,000  file SHA-256 hashes         SHA256:Size:Name
  standin.mdb  1,900,000  PE-section MD5 hashes       Size:MD5:Name
  standin.msb    100,000  PE-section SHA-256 hashes   Size:SHA256:Name
  standin.ndb    120,000  body signatures             Name:Target:Offset:Hex  (about 40 % plain hex, the
                          rest with ??, {n}, {n-m}, {-n}, {n-}, * and (aa|bb) alternatives; offsets *,
                          0, EOF-n, EP+n for PE targets)
  standin.ldb     40,000  logical signatures          Name;Engine:81-255,Target:T;Expr;Sub0;...  with 2 to 4
                          hex subsignatures (some ::i, ::w, anchored n:), about 5 % with a PCRE subsignature

3,610,000 signatures, about 291 MB of text. Every hash and pattern is random bytes from the seed, with
static runs of at least 4 bytes between wildcards, so nothing matches real mail. Names look like the
official ones (Platform.Category.Family-Id-Rev) with "Standin" in the family.

Left out (small in number, or not a matcher the mail path exercises): bytecode (.cbc), phishing URL
lists (.pdb/.wdb/.gdb), allow lists (.fp/.sfp/.ign2), container (.cdb), icon (.idb), certificate (.crb),
file-type magic (.ftm), and YARA.

Output: --out, default out/bench/officialdb/scale-SCALE-seed-SEED/ (gitignored); the counts go to
counts.json beside the directory (not in it: a file in it would be read as a database).
Existing output with the same counts is reused unless --force.
"""
import argparse
import json
import os
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Full-scale counts per file (scale 1.0).
MIX = {
    "hdb": 1_200_000,
    "hsb": 250_000,
    "mdb": 1_900_000,
    "msb": 100_000,
    "ndb": 120_000,
    "ldb": 40_000,
}
PCRE_FRACTION = 0.05

PLATFORMS = ["Win", "Win", "Win", "Win", "Doc", "Xls", "Html", "Js", "Pdf", "Email", "Unix", "Andr", "Osx", "Multios", "Txt", "Rtf"]
CATEGORIES = ["Trojan", "Trojan", "Malware", "Downloader", "Exploit", "Virus", "Worm", "Adware", "Spyware",
              "Ransomware", "Packed", "Coinminer", "Dropper", "Keylogger", "Phishing", "Backdoor"]
SYLLABLES = ["ag", "ent", "zu", "mo", "rax", "lin", "ko", "vet", "dor", "qua", "sim", "bel", "tor", "nix",
             "gal", "pex", "run", "vo", "tix", "mar"]

# .ndb target types (libclamav's): 0 any, 1 PE, 3 HTML, 4 mail, 6 ELF, 7 ASCII text, 10 PDF, 9 Mach-O.
NDB_TARGETS = [(1, 52), (0, 20), (3, 8), (7, 7), (6, 4), (4, 3), (10, 3), (9, 3)]
LDB_TARGETS = [(1, 60), (0, 15), (3, 8), (7, 7), (10, 5), (4, 3), (6, 2)]


def weighted(rnd, table):
    total = sum(w for _, w in table)
    x = rnd.random() * total
    for v, w in table:
        x -= w
        if x < 0:
            return v
    return table[-1][0]


class Names:
    def __init__(self, rnd):
        self.rnd = rnd
        self.families = ["Standin" + "".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(1, 3))).capitalize()
                         for _ in range(4000)]
        self.serial = 1_000_000

    def next(self):
        r = self.rnd
        self.serial += r.randint(1, 7)
        return f"{r.choice(PLATFORMS)}.{r.choice(CATEGORIES)}.{r.choice(self.families)}-{self.serial}-{r.randint(0, 2)}"


def file_size(rnd):
    # Sizes of the files official hashes describe: mostly 10 KB - 2 MB, a tail both ways.
    return max(64, int(rnd.lognormvariate(11.5, 1.6)))


def section_size(rnd):
    return max(512, int(rnd.lognormvariate(10.0, 1.5)))


def hexbytes(rnd, n):
    return rnd.randbytes(n).hex()


def static(rnd, lo=4, hi=12):
    return hexbytes(rnd, rnd.randint(lo, hi))


def body_hex(rnd, wildcards):
    """A body pattern: plain hex, or static runs (>= 4 bytes) joined by wildcards."""
    if not wildcards:
        return hexbytes(rnd, rnd.randint(10, 40))
    parts = [static(rnd, 6, 16)]
    for _ in range(rnd.randint(1, 4)):
        k = rnd.random()
        if k < 0.30:
            parts.append("??" * rnd.randint(1, 4))
        elif k < 0.55:
            n = rnd.randint(0, 16)
            parts.append(f"{{{n}-{n + rnd.randint(1, 48)}}}")
        elif k < 0.65:
            parts.append(f"{{{rnd.randint(1, 32)}}}")
        elif k < 0.72:
            parts.append(f"{{-{rnd.randint(2, 24)}}}")
        elif k < 0.77:
            parts.append(f"{{{rnd.randint(1, 16)}-}}")
        elif k < 0.87:
            parts.append("*")
        else:
            alts = sorted({hexbytes(rnd, 1) for _ in range(rnd.randint(2, 4))})
            if len(alts) < 2:
                alts.append("00" if alts[0] != "00" else "ff")
            parts.append("(" + "|".join(alts) + ")")
        parts.append(static(rnd, 4, 12))
    return "".join(parts)


def ndb_line(rnd, names):
    target = weighted(rnd, NDB_TARGETS)
    k = rnd.random()
    if target == 1 and k < 0.15:
        offset = f"EP+{rnd.randint(0, 512)}"
    elif k < 0.25:
        offset = "0"
    elif k < 0.30:
        offset = f"EOF-{rnd.randint(16, 4096)}"
    else:
        offset = "*"
    return f"{names.next()}:{target}:{offset}:{body_hex(rnd, rnd.random() >= 0.40)}"


def ldb_subsig(rnd):
    k = rnd.random()
    if k < 0.60:
        return hexbytes(rnd, rnd.randint(6, 24))
    if k < 0.75:
        return hexbytes(rnd, rnd.randint(6, 20)) + "::i"
    if k < 0.82:
        return hexbytes(rnd, rnd.randint(6, 16)) + "::w"
    if k < 0.90:
        return f"{rnd.randint(0, 1024)}:" + hexbytes(rnd, rnd.randint(6, 16))
    return body_hex(rnd, True)


def ldb_expr(rnd, n):
    ids = list(range(n))
    if n == 2:
        return rnd.choice(["0&1", "0&1", "0&1", "0|1"])
    if n == 3:
        return rnd.choice(["0&1&2", "0&1&2", "0&(1|2)", "(0|1)&2", "0&1&2"])
    return rnd.choice(["0&1&2&3", "0&1&2&3", "0&(1|2)&3", "(0|1)&2&3", "0&1&(2|3)"])


def pcre_subsig(rnd):
    # Random tokens around common PCRE constructs; triggered by subsignature 0.
    a = hexbytes(rnd, 4)
    b = hexbytes(rnd, 3)
    form = rnd.randint(0, 3)
    if form == 0:
        body = f"{a}[a-z0-9]{{2,12}}\\.{b}"
    elif form == 1:
        body = f"(?:{a}|{b})\\s*=\\s*[\"\\x27]?[^\"\\x27\\x3b]{{4,40}}{hexbytes(rnd, 3)}"
    elif form == 2:
        body = f"https?\\x3a\\/\\/[a-z0-9.-]{{3,30}}\\/{a}\\/[a-z]{{3,8}}\\.php"
    else:
        body = f"\\b{a}\\d{{2,6}}{b}\\b"
    return f"0/{body}/" + rnd.choice(["", "i", "i", "s", "si"])


def ldb_line(rnd, names, with_pcre):
    target = weighted(rnd, LDB_TARGETS)
    n = rnd.randint(2, 4)
    subs = [ldb_subsig(rnd) for _ in range(n)]
    expr = ldb_expr(rnd, n)
    if with_pcre:
        subs.append(pcre_subsig(rnd))
        expr = f"({expr})&{n}"
    return f"{names.next()};Engine:81-255,Target:{target};{expr};" + ";".join(subs)


def generate(out, scale, seed):
    counts = {ext: max(1, round(n * scale)) for ext, n in MIX.items()}
    os.makedirs(out, exist_ok=True)
    written = {}
    for i, ext in enumerate(MIX):
        # One random stream per file, so a file's content does not depend on the others' counts.
        rnd = random.Random(f"{seed}:{ext}")
        names = Names(rnd)
        n = counts[ext]
        path = os.path.join(out, f"standin.{ext}")
        tmp = path + ".tmp"
        extra = {}
        with open(tmp, "w", buffering=1 << 20) as f:
            lines = []
            if ext == "hdb":
                for _ in range(n):
                    lines.append(f"{hexbytes(rnd, 16)}:{file_size(rnd)}:{names.next()}\n")
            elif ext == "hsb":
                for _ in range(n):
                    lines.append(f"{hexbytes(rnd, 32)}:{file_size(rnd)}:{names.next()}\n")
            elif ext == "mdb":
                for _ in range(n):
                    lines.append(f"{section_size(rnd)}:{hexbytes(rnd, 16)}:{names.next()}\n")
            elif ext == "msb":
                for _ in range(n):
                    lines.append(f"{section_size(rnd)}:{hexbytes(rnd, 32)}:{names.next()}\n")
            elif ext == "ndb":
                for _ in range(n):
                    lines.append(ndb_line(rnd, names) + "\n")
            elif ext == "ldb":
                pcre = 0
                for _ in range(n):
                    p = rnd.random() < PCRE_FRACTION
                    pcre += p
                    lines.append(ldb_line(rnd, names, p) + "\n")
                extra["ldb_pcre"] = pcre
            f.writelines(lines)
        os.rename(tmp, path)
        written[ext] = dict(count=n, bytes=os.path.getsize(path), **extra)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = the official set's size (3.61M signatures)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="default out/bench/officialdb/scale-SCALE-seed-SEED")
    ap.add_argument("--force", action="store_true", help="regenerate even if the output exists")
    a = ap.parse_args()
    if a.scale <= 0:
        sys.exit("officialdb: --scale must be positive")
    out = a.out or default_dir(a.scale, a.seed)
    print(ensure(out, a.scale, a.seed, a.force, verbose=True))


def default_dir(scale, seed):
    return os.path.join(REPO, "out", "bench", "officialdb", f"scale-{scale:g}-seed-{seed}")


def ensure(out, scale, seed, force=False, verbose=False):
    """Writes the stand-in into `out` unless it is there already; returns the directory."""
    out = os.path.abspath(out)
    meta = out.rstrip("/") + ".counts.json"
    want = dict(scale=scale, seed=seed)
    if not force and os.path.exists(meta):
        with open(meta) as f:
            have = json.load(f)
        if {k: have.get(k) for k in want} == want and all(
                os.path.exists(os.path.join(out, f"standin.{e}")) for e in MIX):
            if verbose:
                print(f"officialdb: reusing {out} ({have['total']} signatures)", file=sys.stderr)
            return out
    t = time.monotonic()
    written = generate(out, scale, seed)
    total = sum(v["count"] for v in written.values())
    size = sum(v["bytes"] for v in written.values())
    with open(meta, "w") as f:
        json.dump(dict(want, total=total, bytes=size, files=written), f, indent=1)
    if verbose:
        print(f"officialdb: {total} signatures, {size / 1e6:.0f} MB in {out} ({time.monotonic() - t:.1f} s)",
              file=sys.stderr)
        for ext, v in written.items():
            print(f"  standin.{ext}: {v['count']}" + (f" ({v['ldb_pcre']} with PCRE)" if "ldb_pcre" in v else ""),
                  file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
