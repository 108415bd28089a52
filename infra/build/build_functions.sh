#!/usr/bin/env bash
# Build the one artifact every Offload Lambda ships: functions/ + shared/ + the lean
# dependencies of [project].dependencies, as wheels for the Lambda platform (arm64,
# Amazon Linux 2023, CPython LAMBDA_PYTHON_VERSION) whatever the local Python is.
#
#   infra/build/build_functions.sh OUTDIR
#
# Environment (all optional):
#   LAMBDA_PYTHON_VERSION  target CPython (default: infra/python-version, the template's Runtime)
#   LAMBDA_BYTECODE_PYTHON an interpreter of that version to compile bytecode with (default:
#                          python<version> or uv's; without one the artifact ships no .pyc)
#   LAMBDA_PLATFORM        uv --python-platform (default aarch64-manylinux_2_34: AL2023 glibc)
#   BUNDLE_RUNTIME_SDK=1   also ship boto3/botocore and their deps (default: rely on the runtime's)
#
# `sam build` calls this through infra/build/Makefile; tests call it directly.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python_version=${LAMBDA_PYTHON_VERSION:-$(cat "$root/infra/python-version")}
platform=${LAMBDA_PLATFORM:-aarch64-manylinux_2_34}
out=$1

# Streaq's command line (typer, rich and what they pull in, watchfiles for --reload) is
# never imported by a Lambda: `import streaq` needs only coredis, anyio and crontab.
cli_only='typer|rich|pygments|markdown-it-py|mdurl|shellingham|watchfiles|click'
# boto3 and its dependency tree are part of every Lambda Python runtime. Relying on them
# keeps ~20 MB of botocore data out of each artifact; we call only long-stable APIs
# (S3 presign/head, Secrets Manager, ECS DescribeServices). BUNDLE_RUNTIME_SDK=1 pins ours.
runtime_sdk='boto3|botocore|s3transfer|jmespath|python-dateutil|six|urllib3'
exclude=$cli_only
# Published as an sdist only, and pure Python: the one thing built from source, and the
# build checks that its wheel is platform-independent.
pure_sdists='crontab'
if [ "${BUNDLE_RUNTIME_SDK:-0}" != "1" ]; then
  exclude="$exclude|$runtime_sdk"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Lean set only: no extras (worker, local) and no dev group; versions exactly as uv.lock.
uv export --project "$root" --frozen --no-dev --no-hashes --no-emit-project \
  --no-header --no-annotate --format requirements.txt -o "$work/locked.txt" >/dev/null
grep -v -i -E "^($exclude)==" "$work/locked.txt" | grep -v -i -E "^($pure_sdists)==" \
  >"$work/binary.txt" || true
grep -i -E "^($pure_sdists)==" "$work/locked.txt" >"$work/sdist.txt" || true

rm -rf "${out:?}"
mkdir -p "$out"
# --no-deps: the export is already the full resolved closure; anything we filtered out
# must stay out. --only-binary: a source build would compile for this machine, not Lambda.
install() {
  # --link-mode copy: files of its own, not hard links into the uv cache.
  uv pip install --quiet --no-config --link-mode copy --target "$out" --no-deps \
    --python-platform "$platform" --python-version "$python_version" "$@"
}
install --only-binary :all: -r "$work/binary.txt"
if [ -s "$work/sdist.txt" ]; then
  install -r "$work/sdist.txt"
  for name in ${pure_sdists//|/ }; do
    if ! grep -q -E '^Root-Is-Purelib: *true' "$out/$name"-*.dist-info/WHEEL; then
      echo "$name: built from source but not pure Python; it cannot ship to Lambda" >&2
      exit 1
    fi
  done
fi

for package in functions shared; do
  cp -R "$root/$package" "$out/$package"
done
# Console scripts (bin/) have a shebang for this machine's Python and nothing runs them.
rm -rf "${out:?}/bin"
find "$out" -depth -name __pycache__ -type d -exec rm -rf {} +
find "$out" -name '*.pyc' -delete

# Bytecode from an interpreter of the target version only. Lambda's code directory is
# read-only, so without .pyc every cold start compiles every module it imports again.
# unchecked-hash: valid whatever mtimes the zip gives the files.
target_python() {
  local candidate
  for candidate in "${LAMBDA_BYTECODE_PYTHON:-}" "python$python_version" \
                   "$(uv python find --no-project "$python_version" 2>/dev/null || true)"; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$python_version')" \
        2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
if compiler=$(target_python); then
  "$compiler" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$out" >/dev/null \
    || echo "warning: some files did not compile to bytecode" >&2
  echo "bytecode: compiled with $compiler" >&2
else
  echo "warning: no Python $python_version here, so the artifact ships without bytecode and" \
    "each cold start compiles it (uv python install $python_version, or" \
    "sam build --use-container)" >&2
fi

size_kib=$(du -sk "$out" | cut -f1)
echo "built $out: python $python_version, $platform, $((size_kib / 1024)) MiB unzipped" >&2
