#!/bin/sh
echo "$GREETING"
echo "running as $(id -un) in $(pwd), hostname $(hostname)"
cat /app/built.txt
