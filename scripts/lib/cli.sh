# Command-line parsing for the project's shell scripts (deploy.sh, destroy.sh, build-images.sh,
# test-e2e.sh), so that each one reads only its own options and all answer bad input alike.
#
# A script sources this file (which sets $here, the script's directory, and $repo, the repository's
# root), defines usage() (the help text) and option() (one case per option of its own; return 1 for
# a name it does not know), lists the options that take a value in cli_value_options, and calls
# cli_parse NAME "$@":
#   -h/--help             usage on stdout, exit 0
#   --opt VALUE, --opt=VALUE
#                         option --opt VALUE, for the options in cli_value_options
#   --flag                option --flag
#   --                    what follows goes to cli_rest (a script that takes none leaves
#                         cli_rest_allowed unset, and "--" is then an unknown argument)
#   anything else, or a missing value: "NAME: ..." and usage on stderr, exit 2
# shellcheck shell=bash

# shellcheck disable=SC2034 # here and repo are for the script that sources this file
here="$(cd "$(dirname "${BASH_SOURCE[1]:?cli.sh is for scripts to source}")" && pwd)"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

cli_value_options=()
cli_rest=()

# die MESSAGE: "NAME: MESSAGE" on stderr, exit 1 (for errors after parsing).
die() {
  echo "$cli_name: $*" >&2
  exit 1
}

cli_usage_error() {
  echo "$cli_name: $*" >&2
  usage >&2
  exit 2
}

cli_takes_value() {
  local cli_known
  for cli_known in "${cli_value_options[@]}"; do
    [[ "$cli_known" == "$1" ]] && return 0
  done
  return 1
}

cli_parse() {
  cli_name="$1"
  shift
  local cli_opt
  while (($# > 0)); do
    case "$1" in
      -h | --help)
        usage
        exit 0
        ;;
      --)
        [[ -n "${cli_rest_allowed:-}" ]] || cli_usage_error "unknown argument: --"
        shift
        # shellcheck disable=SC2034 # read by the script that sourced this file
        cli_rest=("$@")
        return 0
        ;;
      --*=*)
        cli_opt="${1%%=*}"
        cli_takes_value "$cli_opt" || cli_usage_error "unknown argument: $1"
        option "$cli_opt" "${1#*=}" || cli_usage_error "unknown argument: $1"
        ;;
      *)
        if cli_takes_value "$1"; then
          (($# >= 2)) || cli_usage_error "$1 needs a value"
          option "$1" "$2" || cli_usage_error "unknown argument: $1"
          shift
        else
          option "$1" || cli_usage_error "unknown argument: $1"
        fi
        ;;
    esac
    shift
  done
}
