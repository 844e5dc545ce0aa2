#!/usr/bin/env bash
# Re-vendor three.js for the report viewer (src/videofrom3d/report/static/three/). Chromium refuses ES module
# scripts on file:// pages, and the report must open from disk, so the npm package's module build (core,
# WebGL renderer, OrbitControls, GLTFLoader) is bundled once into one classic script that sets
# `window.THREE`. Run by a maintainer when upgrading, never at install or report time.
# Usage: bash scripts/vendor_three.sh [VERSION]   (needs node + npm; the npm registry)
set -euo pipefail
VERSION="${1:-0.187.0}"
DEST="$(cd "$(dirname "$0")/.." && pwd)/src/videofrom3d/report/static/three"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
npm pack --silent "three@$VERSION" >/dev/null
npm install --silent --no-save esbuild@0.25 >/dev/null  # before three: npm prunes what it did not install
mkdir -p node_modules/three && tar xzf "three-$VERSION.tgz" -C node_modules/three --strip-components=1
cat > entry.js <<'JS'
export * from 'three';
export { OrbitControls } from 'three/addons/controls/OrbitControls.js';
export { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
JS
./node_modules/.bin/esbuild entry.js --bundle --format=iife --global-name=THREE --minify --target=es2020 \
  --legal-comments=none --log-level=warning \
  --banner:js="/* three.js $VERSION (npm 'three', with OrbitControls and GLTFLoader), bundled by scripts/vendor_three.sh. Copyright 2010-2026 Three.js Authors. MIT licence: see LICENSE beside this file. */" \
  --outfile=three.min.js
mkdir -p "$DEST"
cp three.min.js "$DEST/three.min.js"
cp node_modules/three/LICENSE "$DEST/LICENSE"
echo "$VERSION" > "$DEST/VERSION"
echo "vendored three $VERSION into $DEST ($(wc -c < "$DEST/three.min.js") bytes)"
