#!/bin/sh
# Usage: disk_report.sh DIR TOP — prints the TOP largest entries of DIR.
# Progress protocol: "::progress DONE TOTAL message" lines on stdout.
set -eu
dir=$1
top=$2
echo "::progress 0 2 measuring $dir"
du -s "$dir"/* 2>/dev/null | sort -rn | head -n "$top" > report.txt || true
echo "::progress 1 2 measured"
cat report.txt
echo "::log disk report for $dir: $(wc -l < report.txt) entries"
echo "::progress 2 2 done"
