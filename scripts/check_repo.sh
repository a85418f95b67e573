#!/usr/bin/env bash
# The repository shows the product as it is: a README short enough to read in five minutes (detail
# lives in docs/), and no trace of how the code was made — numbered work sessions, issue numbers,
# internal planning files. History belongs to git; comments say why the code is as it is.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
lines=$(wc -l < README.md)
if [ "$lines" -gt 300 ]; then
  echo "check_repo: README.md has $lines lines (at most 300); move the detail to a page in docs/" >&2
  status=1
fi
pattern='[Ss]ession [0-9]|[Ii]ssue [0-9]|DESIGN[.]md'
if git grep -nE "$pattern" -- . >&2; then
  echo "check_repo: the lines above refer to how the project was made (a numbered session or" \
    "issue, or an internal design file); describe the code as it is" >&2
  status=1
fi
if git ls-files | grep -E "$pattern|_s[0-9]+[.]" >&2; then
  echo "check_repo: the files above are named after a run or a work session; name them after" \
    "what they show" >&2
  status=1
fi
exit $status
