#!/usr/bin/env bash
# Compiles the job's JVM operators (connectors/jvm/**.java) against a Flink lib/ dir into one jar.
#   connectors/jvm/build.sh <flink lib dir> <output jar>
# `make install` runs it against PyFlink's own lib/ (the jar lands in .cache/jars/flink,
# which the stack adds to the cluster's lib/); docker/Dockerfile against the Flink image's.
set -euo pipefail
lib=$1
out=$2
src=$(cd "$(dirname "$0")" && pwd)
classes=$(mktemp -d)
trap 'rm -rf "$classes"' EXIT
# Java 11 bytecode: Flink 2.x runs on Java 11, 17 and 21.  No annotation processing: none is
# used, and -Xlint would fail the build on the function hints no processor claims.
javac --release 11 -proc:none -Xlint:all -Werror -d "$classes" -cp "$lib/*" $(find "$src" -name '*.java' | sort)
mkdir -p "$(dirname "$out")"
jar --create --file "$out" -C "$classes" .
