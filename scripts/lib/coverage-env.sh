# The environment the workspace is built and tested in for line coverage. Sourced, from
# the repository root, by scripts/test-coverage.sh, and by scripts/test.sh around
# scripts/test-containers.sh so that its test binary is the one already built.
#
# Installs what is missing (scripts/install-coverage.sh), then takes
# `cargo llvm-cov show-env`: a rustc wrapper that builds the workspace's crates with
# -C instrument-coverage (not the dependencies), and LLVM_PROFILE_FILE, which every
# instrumented process inherits, test or binary it starts. The target directory is
# <target>/llvm-cov-target, so plain builds in <target> are neither rebuilt nor reused.

coverage_env="$(scripts/install-coverage.sh)"
eval "$coverage_env"
case "${CARGO_TARGET_DIR:-}" in
  */llvm-cov-target) ;;
  *) export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/llvm-cov-target" ;;
esac
mkdir -p "$CARGO_TARGET_DIR"
coverage_env="$(cargo llvm-cov show-env --sh)"
eval "$coverage_env"
unset coverage_env
