#!/bin/sh
echo "app $1: $(cat /app/version.txt)"
