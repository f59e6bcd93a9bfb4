"""A CycloneDX 1.5 SBOM of pgqd's dependencies, for scripts/release.sh.

Reads `cargo metadata --format-version 1` (filtered to the release targets) on stdin;
arguments: the path of Cargo.lock (for the crates' SHA-256 checksums) and the timestamp
(SOURCE_DATE_EPOCH), so the same commit gives the same SBOM. Lists the crates reached
from pgqd through normal dependencies only: dev-dependencies and build-dependencies
(build scripts, cc) do not end up in the binary, nor do proc-macro crates (derives) and
what only they use.
"""

import datetime
import json
import sys
import tomllib
import uuid

ROOT = "pgqd"


def purl(pkg):
    return f"pkg:cargo/{pkg['name']}@{pkg['version']}"


def checksums(lock_path):
    with open(lock_path, "rb") as f:
        lock = tomllib.load(f)
    return {(p["name"], p["version"]): p["checksum"] for p in lock["package"] if "checksum" in p}


def linked(dep, macros):
    """Whether a dependency edge ends up in the binary: a normal one, not a proc-macro."""
    return dep["pkg"] not in macros and any(k["kind"] is None for k in dep["dep_kinds"])


def runtime_closure(meta):
    """The package ids reached from pgqd through linked dependencies, with their edges."""
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    macros = {p["id"] for p in meta["packages"]
              if any("proc-macro" in t["kind"] for t in p["targets"])}
    root = next(p["id"] for p in meta["packages"] if p["name"] == ROOT and p["source"] is None)
    seen, todo = {root: []}, [root]
    while todo:
        for dep in nodes[todo.pop()]["deps"]:
            if not linked(dep, macros):
                continue
            if dep["pkg"] not in seen:
                seen[dep["pkg"]] = []
                todo.append(dep["pkg"])
    for pid in seen:
        seen[pid] = [d["pkg"] for d in nodes[pid]["deps"] if d["pkg"] in seen and linked(d, macros)]
    return root, seen


def component(pkg, sums):
    c = {"type": "library", "bom-ref": purl(pkg), "name": pkg["name"],
         "version": pkg["version"], "purl": purl(pkg)}
    if pkg.get("license"):
        c["licenses"] = [{"expression": pkg["license"]}]
    if pkg.get("description"):
        c["description"] = pkg["description"].strip()
    digest = sums.get((pkg["name"], pkg["version"]))
    if digest:
        c["hashes"] = [{"alg": "SHA-256", "content": digest}]
    return c


def main():
    meta = json.load(sys.stdin)
    sums = checksums(sys.argv[1])
    when = datetime.datetime.fromtimestamp(int(sys.argv[2]), datetime.timezone.utc)
    packages = {p["id"]: p for p in meta["packages"]}
    root, graph = runtime_closure(meta)
    me = component(packages[root], sums)
    me["type"] = "application"
    deps = sorted((packages[pid] for pid in graph if pid != root), key=lambda p: (p["name"], p["version"]))
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, purl(packages[root]))}",
        "version": 1,
        "metadata": {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "component": me,
                     "tools": {"components": [{"type": "application", "name": "cargo metadata"}]}},
        "components": [component(p, sums) for p in deps],
        "dependencies": sorted(
            ({"ref": purl(packages[pid]), "dependsOn": sorted(purl(packages[d]) for d in ds)}
             for pid, ds in graph.items()),
            key=lambda d: d["ref"]),
    }
    json.dump(bom, sys.stdout, indent=2)
    print()


main()
