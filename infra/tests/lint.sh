#!/usr/bin/env bash
# Static checks of the deployment files, no Docker or AWS needed:
#   - cfn-lint on infra/template.yaml (every level, informational included)
#   - shellcheck on every shell script in the repository (tracked or new *.sh, and .ci/run)
#   - the user-data inside the template is infra/ec2/user-data.sh, byte for byte
set -euo pipefail

cd "$(dirname "$0")/../.."
cfn_lint=${CFN_LINT:-cfn-lint}

echo "lint.sh: $("$cfn_lint" --version) on infra/template.yaml"
"$cfn_lint" --include-checks I -- infra/template.yaml

mapfile -t scripts < <(
    {
        git ls-files '*.sh'
        git ls-files --others --exclude-standard '*.sh'
        echo .ci/run
    } | sort -u
)
echo "lint.sh: $(shellcheck --version | sed -n 's/^version: //p' | sed 's/^/shellcheck /') on ${#scripts[@]} scripts"
shellcheck -x "${scripts[@]}"

# The template sends user-data as a literal block between two marker comments, indented 16.
embedded=$(awk '
    /# user-data.sh ends/ { inside = 0 }
    inside == 2 { sub(/^                /, ""); print }
    inside == 1 && /- \|$/ { inside = 2 }
    /# user-data.sh begins/ { inside = 1 }
' infra/template.yaml)
if ! diff -u infra/ec2/user-data.sh <(printf '%s\n' "$embedded") >&2; then
    echo "lint.sh: the user-data in infra/template.yaml differs from infra/ec2/user-data.sh (above)" >&2
    exit 1
fi
echo "lint.sh: template user-data matches infra/ec2/user-data.sh"
