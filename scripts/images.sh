#!/usr/bin/env bash
# Builds berth's demo images (PostgreSQL 15, Redis 7 and the Flask demo app) from Debian packages, without
# Docker Hub: one debootstrap'ed minbase layer shared by all images, one package layer per image (recipes in
# images/*/recipe), packed with umoci into an OCI layout, and served from Debian's docker-registry on loopback.
# Everything is cached under .cache/images, keyed on the recipes' content: a second run takes seconds.
# The Stack controller's image (images/berth) is built on its own: the release binary and the libraries it links,
# without the base's other files, in a layout of its own (.cache/images/berth, tags <version> and latest).
#
#   scripts/images.sh [all]       build what changed, start the registry if needed, push (what `make images` runs)
#   scripts/images.sh build       build only; prints the OCI layout and its tags
#   scripts/images.sh berth       build the controller's image (cargo build --release first), push it as
#                                 $BERTH_REGISTRY/berth/berth:<version> and :latest (what `make image-berth` runs)
#   scripts/images.sh build-berth build the controller's image only; prints its layout and tags
#   scripts/images.sh stop        stop the registry this script started
#
# Environment: BERTH_IMAGES_CACHE (cache dir), BERTH_REGISTRY (host:port, default 127.0.0.1:5000, the address
# config/samples/stack.yaml names), BERTH_REGISTRY_DIR (registry config, storage, pid and log),
# BERTH_DEBIAN_MIRROR, BERTH_IMAGE_BINARY (a berth binary to pack instead of building the release one: the
# tests pack the debug build they already have). Exit status 3 means the Debian mirror cannot be reached, so debootstrap cannot work.
set -Eeuo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${BERTH_IMAGES_CACHE:-$repo/.cache/images}
registry=${BERTH_REGISTRY:-127.0.0.1:5000}
registry_dir=${BERTH_REGISTRY_DIR:-$cache/registry}
mirror=${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
layout=$cache/oci
berth_layout=$cache/berth
images=(postgres redis demo-app)

say() { printf 'images: %s\n' "$*"; }
die() {
  printf 'images: error: %s\n' "$*" >&2
  exit 1
}

install_tools() {
  local missing=() tool package
  for tool in debootstrap:debootstrap umoci:umoci skopeo:skopeo docker-registry:docker-registry jq:jq curl:curl \
    objcopy:binutils; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || die "missing tools: ${missing[*]}; run as root (apt-get install ${missing[*]})"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  }
  for package in "${missing[@]}"; do
    # Debian starts the registry it installs on :5000 where an init system runs; this script runs its own.
    if [[ $package == docker-registry ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
  done
}

# The cache key of a set of files: their names and contents.
hash_files() {
  local file
  for file in "$@"; do
    if [[ -d $file ]]; then
      find "$file" -type f \! -name '*.pyc' -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' f; do
        printf '%s\n' "${f#"$repo"/}"
        cat "$f"
      done
    else
      printf '%s\n' "${file#"$repo"/}"
      cat "$file"
    fi
  done | sha256sum | cut -c1-16
}

has_tag() {
  local tags
  [[ -d $layout ]] && tags=$(umoci ls --layout "$layout" 2>/dev/null) && grep -qx -- "$1" <<<"$tags"
}

# Mounts made while building, undone on any exit so that removing a work directory never follows them.
mounts=()
work_dirs=()
cleanup() {
  cleanup_mounts
  local dir
  for dir in "${work_dirs[@]}"; do
    # Never remove a tree that still has something mounted in it (the bind mount of /dev, say).
    if grep -q " $dir/" /proc/self/mounts; then
      printf 'images: error: %s still has mounts; not removing it\n' "$dir" >&2
      continue
    fi
    rm -rf "$dir"
  done
  work_dirs=()
}
cleanup_mounts() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    if mountpoint -q "${mounts[i]}"; then umount "${mounts[i]}" || umount -l "${mounts[i]}"; fi
  done
  mounts=()
}
trap cleanup EXIT

# Unpacks an image (layout:tag) into a new work bundle, named in $bundle.
new_bundle() {
  bundle=$cache/work/$2.$$
  rm -rf "$bundle"
  mkdir -p "$cache/work"
  work_dirs+=("$bundle")
  umoci unpack --image "$1" "$bundle" >/dev/null
}

# What apt and maintainer scripts expect in a chroot; the mounts go before the layer is packed.
mount_api() {
  local root=$1
  mount --bind /dev "$root/dev" && mounts+=("$root/dev")
  mount -t proc proc "$root/proc" && mounts+=("$root/proc")
}

check_mirror() {
  curl -fsS --max-time 20 -o /dev/null "$mirror/dists/$SUITE/Release" || {
    printf 'images: error: cannot reach the Debian mirror %s (set BERTH_DEBIAN_MIRROR); debootstrap cannot work here\n' \
      "$mirror" >&2
    exit 3
  }
}

# Drops what a container never reads: documentation (copyright notices stay), apt's lists and caches, logs.
slim() {
  local root=$1
  find "$root/usr/share/doc" -mindepth 1 \! -name copyright \! -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{man,info,groff,lintian,linda}/* "$root"/var/cache/debconf/*-old
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 \! -name locale.alias -exec rm -rf '{}' + 2>/dev/null || true
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  find "$root/var/log" -type f -delete
  rm -rf "$root"/tmp/* "$root"/var/tmp/*
}

# The shared base layer: debootstrap minbase, with dpkg told to skip documentation in every later install.
build_base() {
  # shellcheck source=../images/base/recipe
  source "$repo/images/base/recipe"
  local arch
  arch=$(dpkg --print-architecture)
  base_key=$(printf '%s %s %s\n' "$mirror" "$arch" "$(hash_files "$repo/images/base")" | sha256sum | cut -c1-16)
  base_tag=base-$base_key
  if has_tag "$base_tag"; then
    say "base: cached ($SUITE $VARIANT, $base_tag)"
    return
  fi
  check_mirror
  say "base: debootstrap $SUITE ($VARIANT, $arch) from $mirror (about a minute)"
  [[ -d $layout ]] || umoci init --layout "$layout"
  has_tag empty || umoci new --image "$layout:empty"
  new_bundle "$layout:empty" base
  mkdir -p "$cache/debs"
  debootstrap --variant="$VARIANT" --cache-dir="$cache/debs" "$SUITE" "$bundle/rootfs" "$mirror" \
    >"$cache/work/debootstrap.log" 2>&1 || {
    tail -n 20 "$cache/work/debootstrap.log" >&2
    die "debootstrap failed (log: $cache/work/debootstrap.log)"
  }
  install -m 644 "$repo/images/base/dpkg-slim" "$bundle/rootfs/etc/dpkg/dpkg.cfg.d/berth-slim"
  # Packages installed while building must not try to start services.
  printf '#!/bin/sh\nexit 101\n' >"$bundle/rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$bundle/rootfs/usr/sbin/policy-rc.d"
  # The runtime provides /dev; debootstrap's device nodes stay out of the layer.
  find "$bundle/rootfs/dev" -mindepth 1 -delete
  slim "$bundle/rootfs"
  umoci repack --image "$layout:$base_tag" --history.created_by "debootstrap --variant=$VARIANT $SUITE" "$bundle" >/dev/null
  umoci config --image "$layout:$base_tag" --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --architecture "$arch" --os linux --no-history
  cleanup
  say "base: built $base_tag"
}

load_recipe() {
  REF='' PACKAGES=() PRE_INSTALL='' POST_INSTALL='' COPY=() ENTRYPOINT=() CMD=() ENV=() PORTS=() VOLUMES=()
  STOPSIGNAL=SIGTERM WORKDIR=/ USER=''
  # shellcheck source=/dev/null
  source "$repo/images/$1/recipe"
  [[ -n $REF ]] || die "images/$1/recipe sets no REF"
}

# The tag of an image in the layout: its name and a key over the base, its recipe directory, the sources it
# copies, and this script (named from the checkout, so every caller computes the same key).
image_tag() {
  local name=$1 sources=("$repo/images/$1" "$repo/scripts/images.sh") copy
  for copy in "${COPY[@]}"; do sources+=("$repo/${copy%%:*}"); done
  printf '%s-%s\n' "$name" "$(printf '%s %s\n' "$base_key" "$(hash_files "${sources[@]}")" | sha256sum | cut -c1-16)"
}

chroot_run() {
  local root=$1
  shift
  chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 /bin/bash -c "$*"
}

# Installs the recipe's PACKAGES into a root with apt, between its PRE_INSTALL and POST_INSTALL.
apt_install() {
  local root=$1 name=$2
  mount_api "$root"
  # apt's lists and downloaded packages live in the cache, shared by all images and kept out of the layers.
  mkdir -p "$cache/apt-lists/partial" "$cache/debs/partial"
  mount --bind "$cache/apt-lists" "$root/var/lib/apt/lists" && mounts+=("$root/var/lib/apt/lists")
  mount --bind "$cache/debs" "$root/var/cache/apt/archives" && mounts+=("$root/var/cache/apt/archives")
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  [[ -z $PRE_INSTALL ]] || chroot_run "$root" "$PRE_INSTALL"
  # A day-old package list is refreshed; a fresher one is shared between the images of one build.
  if [[ -z $(find "$cache/apt-lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit) ]]; then
    chroot_run "$root" "apt-get update -qq" >/dev/null
  fi
  chroot_run "$root" "apt-get install -y -qq --no-install-recommends ${PACKAGES[*]}" >"$cache/work/$name-apt.log" 2>&1 || {
    tail -n 20 "$cache/work/$name-apt.log" >&2
    die "$name: apt-get install failed (log: $cache/work/$name-apt.log)"
  }
  [[ -z $POST_INSTALL ]] || chroot_run "$root" "$POST_INSTALL"
  cleanup_mounts
  rm -f "$root/etc/resolv.conf"
  : >"$root/etc/resolv.conf"
}

# Copies the recipe's COPY entries (repository path:image path) into a root.
copy_sources() {
  local root=$1 copy
  for copy in "${COPY[@]}"; do
    mkdir -p "$(dirname "$root${copy#*:}")"
    cp -a --no-preserve=ownership "$repo/${copy%%:*}" "$root${copy#*:}"
    find "$root${copy#*:}" -name __pycache__ -prune -exec rm -rf '{}' +
  done
}

build_image() {
  local name=$1 tag=$2 root
  check_mirror
  say "$name: installing ${PACKAGES[*]} on $base_tag"
  new_bundle "$layout:$base_tag" "$name"
  root=$bundle/rootfs
  copy_sources "$root"
  apt_install "$root" "$name"
  slim "$root"
  say "$name: $(du -sh --apparent-size "$root" | cut -f1) unpacked"
  umoci repack --image "$layout:$tag" --history.created_by "apt-get install ${PACKAGES[*]}" "$bundle" >/dev/null
  image_config "$layout:$tag" "$name" "$tag"
  cleanup
}

# Sets an image's configuration from its recipe: environment, entrypoint, user, ports, labels.
image_config() {
  local image=$1 name=$2 tag=$3 entry
  shift 3
  local args=(--image "$image" --no-history --clear config.env --clear config.entrypoint --clear config.cmd
    --config.workingdir "$WORKDIR" --config.stopsignal "$STOPSIGNAL" --config.label "dev.berth.recipe=$tag"
    --config.label "org.opencontainers.image.source=berth images/$name" "$@")
  [[ -z $USER ]] || args+=(--config.user "$USER")
  for entry in "${ENV[@]}"; do args+=(--config.env "$entry"); done
  for entry in "${ENTRYPOINT[@]}"; do args+=(--config.entrypoint "$entry"); done
  for entry in "${CMD[@]}"; do args+=(--config.cmd "$entry"); done
  for entry in "${PORTS[@]}"; do args+=(--config.exposedports "$entry"); done
  for entry in "${VOLUMES[@]}"; do args+=(--config.volume "$entry"); done
  umoci config "${args[@]}"
}


# Tags of an image other than the current one: earlier builds, removed before the layout's garbage collection.
prune_tags() {
  local name=$1 keep=$2 tag
  while IFS= read -r tag; do
    [[ $tag == "$name"-* && $tag != "$keep" ]] && umoci rm --image "$layout:$tag"
  done < <(umoci ls --layout "$layout")
  return 0
}

# Compressed size of an image (tag, layout): its config and layers as stored (and sent to a registry).
image_size() {
  local manifest dir=${2:-$layout}
  manifest=$(jq -r --arg tag "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $tag) | .digest' \
    "$dir/index.json")
  jq '[.config.size, (.layers[].size)] | add' "$dir/blobs/sha256/${manifest#sha256:}" | numfmt --to=iec --suffix=B
}

build_all() {
  mkdir -p "$cache"
  exec 9>"$cache/build.lock"
  flock 9
  build_base
  local name tag
  declare -gA tags=()
  rebuilt=0
  for name in "${images[@]}"; do
    load_recipe "$name"
    tag=$(image_tag "$name")
    if has_tag "$tag"; then
      say "$name: cached ($tag)"
    else
      build_image "$name" "$tag"
      say "$name: built $tag"
      rebuilt=1
    fi
    prune_tags "$name" "$tag"
    tags[$name]=$tag
  done
  prune_tags base "$base_tag"
  umoci gc --layout "$layout"
  flock -u 9
}

# The release binary the controller's image carries, and the version it is tagged with.
berth_binary() {
  command -v cargo >/dev/null 2>&1 || die "cargo is not on the PATH (make deps installs Rust)"
  if [[ -n ${BERTH_IMAGE_BINARY:-} ]]; then
    [[ -x $BERTH_IMAGE_BINARY ]] || die "BERTH_IMAGE_BINARY=$BERTH_IMAGE_BINARY is not an executable"
    berth_bin=$BERTH_IMAGE_BINARY
    berth_version=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
      jq -r '.packages[] | select(.name == "berth") | .version') || die "cargo metadata failed"
    say "berth: packing $berth_bin (BERTH_IMAGE_BINARY)"
    return
  fi
  say "berth: cargo build --release -p berth"
  # Run by a test under `cargo test`, the environment names the test's crate (CARGO_MANIFEST_DIR, CARGO_PKG_*);
  # build scripts that watch those (ring's) would rebuild half the tree, for `make` and the test alike.
  local var unset=()
  for var in $(compgen -e); do
    case $var in
      CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_NAME | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | \
        CARGO_RUSTC_CURRENT_DIR) unset+=(-u "$var") ;;
    esac
  done
  (cd "$repo" && env "${unset[@]}" cargo build --release -p berth) || die "cargo build --release -p berth failed"
  local metadata
  metadata=$(cd "$repo" && cargo metadata --format-version 1 --no-deps) || die "cargo metadata failed"
  berth_bin=$(jq -r .target_directory <<<"$metadata")/release/berth
  berth_version=$(jq -r '.packages[] | select(.name == "berth") | .version' <<<"$metadata")
  [[ -x $berth_bin && -n $berth_version ]] || die "no release berth binary at $berth_bin"
}

# Copies a path from one root into another with every symbolic link on the way to the file it names, so that
# the libraries keep the names (and the merged-/usr links) the dynamic loader looks them up by.
copy_resolved() {
  local from=$1 to=$2 path=$3 dir target hops
  for ((hops = 0; hops < 16; hops++)); do
    dir=$(chroot "$from" /usr/bin/readlink -f "$(dirname "$path")") || die "cannot resolve $path in $from"
    path=$dir/$(basename "$path")
    mkdir -p "$to$dir"
    cp -a "$from$path" "$to$path"
    [[ -L $from$path ]] || return 0
    target=$(readlink "$from$path")
    [[ $target == /* ]] || target=$dir/$target
    path=$target
  done
  die "$3: more than 16 symbolic links"
}

# The package whose /usr/share/doc holds a package's copyright notice: its own, or (where Debian links the
# documentation to a dependency built from the same source, as libgcc-s1 to gcc-12-base) that dependency's.
copyright_package() {
  local root=$1 package=$2 source dependency
  if [[ -f $root/usr/share/doc/$package/copyright ]]; then
    printf '%s\n' "$package"
    return
  fi
  source=$(chroot "$root" dpkg-query -W -f '${source:Package}' "$package")
  for dependency in $(chroot "$root" dpkg-query -W -f '${Depends}' "$package" | tr ',|' '\n' | awk '{ print $1 }'); do
    dependency=${dependency%%:*}
    if [[ -f $root/usr/share/doc/$dependency/copyright &&
      $(chroot "$root" dpkg-query -W -f '${source:Package}' "$dependency") == "$source" ]]; then
      printf '%s\n' "$dependency"
      return
    fi
  done
  die "no copyright notice for $package in the base"
}

# The controller's layer: the stripped binary, the libraries `ldd` resolves for it on the base (the binary must
# start there, which checks the glibc version it needs), their packages' copyright notices, the CA bundle and
# the recipe's files. Nothing else of the base: no shell, no package manager.
build_berth_image() {
  local tag=$1 deps root path link packages=() package doc libs
  check_mirror
  say "berth: taking ${PACKAGES[*]} and the binary's libraries from $base_tag"
  new_bundle "$layout:$base_tag" berth-deps
  deps=$bundle/rootfs
  apt_install "$deps" berth
  # Debug info and symbols are three quarters of a release binary (debug = "line-tables-only"); panic messages
  # keep their file and line, backtraces lose their function names.
  install -d "$deps/usr/local/bin"
  objcopy --strip-all "$berth_bin" "$deps/usr/local/bin/berth"
  libs=$(chroot_run "$deps" "ldd /usr/local/bin/berth") || die "ldd cannot read the berth binary"
  ! grep -q 'not found' <<<"$libs" || die "the base lacks libraries berth links: $(grep 'not found' <<<"$libs")"
  chroot_run "$deps" "/usr/local/bin/berth --help" >/dev/null || die "the berth binary does not start on the base"

  [[ -d $berth_layout ]] || umoci init --layout "$berth_layout"
  umoci ls --layout "$berth_layout" | grep -qx empty || umoci new --image "$berth_layout:empty"
  new_bundle "$berth_layout:empty" berth
  root=$bundle/rootfs
  # The merged-/usr links (/lib, /lib64, ...) as the base has them.
  for link in "$deps"/*; do
    if [[ -L $link ]]; then cp -a "$link" "$root/"; fi
  done
  # ldd prints "name => path (address)" or "path (address)"; the vDSO has no path.
  while read -r path; do
    copy_resolved "$deps" "$root" "$path"
    package=$(chroot "$deps" dpkg-query -S "$path" 2>/dev/null | awk -F: 'NR == 1 { print $1 }') ||
      die "no package owns $path"
    packages+=("$package")
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs")
  copy_resolved "$deps" "$root" /etc/ssl/certs/ca-certificates.crt
  for package in $(printf '%s\n' "${packages[@]}" "${PACKAGES[@]}" | sort -u); do
    doc=$(copyright_package "$deps" "$package")
    copy_resolved "$deps" "$root" "/usr/share/doc/$doc/copyright"
  done
  install -D -m 755 "$deps/usr/local/bin/berth" "$root/usr/local/bin/berth"
  copy_sources "$root"
  # Of the merged-/usr links, those to nothing in this layer (/bin, /sbin) go.
  for link in "$root"/*; do
    if [[ -L $link && ! -e $link ]]; then rm "$link"; fi
  done
  say "berth: $(du -sh --apparent-size "$root" | cut -f1) unpacked (${#packages[@]} libraries)"
  umoci repack --image "$berth_layout:$tag" --history.created_by "berth $berth_version" "$bundle" >/dev/null
  image_config "$berth_layout:$tag" berth "$tag" --config.label "org.opencontainers.image.version=$berth_version"
  cleanup
}

build_berth() {
  berth_binary
  mkdir -p "$cache"
  exec 9>"$cache/build.lock"
  flock 9
  build_base
  load_recipe berth
  # The key also covers the binary, which is the image's point.
  berth_tag=berth-$(printf '%s %s %s\n' "$(image_tag berth)" "$(sha256sum <"$berth_bin")" "$berth_version" |
    sha256sum | cut -c1-16)
  rebuilt=0
  if [[ -d $berth_layout ]] && umoci ls --layout "$berth_layout" | grep -qx -- "$berth_tag"; then
    say "berth: cached ($berth_tag)"
  else
    build_berth_image "$berth_tag"
    say "berth: built $berth_tag"
    rebuilt=1
  fi
  umoci tag --image "$berth_layout:$berth_tag" "$berth_version"
  umoci tag --image "$berth_layout:$berth_tag" latest
  local tag
  while IFS= read -r tag; do
    if [[ $tag == berth-* && $tag != "$berth_tag" ]]; then umoci rm --image "$berth_layout:$tag"; fi
  done < <(umoci ls --layout "$berth_layout")
  umoci gc --layout "$berth_layout"
  flock -u 9
}

registry_pid() {
  local pid
  [[ -f $registry_dir/registry.pid ]] || return 1
  pid=$(cat "$registry_dir/registry.pid")
  [[ -r /proc/$pid/cmdline && $(tr '\0' ' ' <"/proc/$pid/cmdline") == *docker-registry* ]] && printf '%s\n' "$pid"
}

registry_up() { curl -fs --max-time 2 -o /dev/null "http://$registry/v2/" 2>/dev/null; }

start_registry() {
  local pid
  mkdir -p "$registry_dir/storage"
  exec 8>"$registry_dir/start.lock"
  flock 8
  if registry_up; then
    if pid=$(registry_pid); then
      say "registry: running at $registry (pid $pid)"
    else
      say "registry: using the registry that already answers at $registry"
    fi
    return
  fi
  cat >"$registry_dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $registry_dir/storage
  delete:
    enabled: true
http:
  addr: $registry
EOF
  say "registry: starting docker-registry at $registry (storage $registry_dir/storage, log $registry_dir/registry.log)"
  setsid docker-registry serve "$registry_dir/config.yml" >>"$registry_dir/registry.log" 2>&1 </dev/null &
  echo $! >"$registry_dir/registry.pid"
  local deadline=$((SECONDS + 15))
  until registry_up; do
    if ! kill -0 "$(cat "$registry_dir/registry.pid")" 2>/dev/null; then
      tail -n 5 "$registry_dir/registry.log" >&2
      die "docker-registry exited (is $registry taken? set BERTH_REGISTRY)"
    fi
    ((SECONDS < deadline)) || die "docker-registry did not answer at $registry within 15 s"
    sleep 0.2
  done
  flock -u 8
}

# After a rebuild the registry holds the replaced images' blobs; its garbage collector needs it stopped.
collect_registry_garbage() {
  ((rebuilt)) && registry_pid >/dev/null || return 0
  stop_registry
  docker-registry garbage-collect --delete-untagged "$registry_dir/config.yml" >"$registry_dir/gc.log" 2>&1 ||
    say "registry: garbage collection failed (log: $registry_dir/gc.log)"
  say "registry: removed the blobs of earlier builds ($(du -sh "$registry_dir/storage" | cut -f1) left)"
  start_registry
}

stop_registry() {
  local pid
  if pid=$(registry_pid); then
    kill "$pid"
    say "registry: stopped (pid $pid)"
  else
    say "registry: not running"
  fi
  rm -f "$registry_dir/registry.pid"
}

push_all() {
  local name digest
  for name in "${images[@]}"; do
    load_recipe "$name"
    skopeo copy --quiet --dest-tls-verify=false "oci:$layout:${tags[$name]}" "docker://$registry/$REF"
    digest=$(skopeo inspect --raw --tls-verify=false "docker://$registry/$REF" | sha256sum | cut -d' ' -f1)
    say "$name: $registry/$REF ($(image_size "${tags[$name]}"), sha256:${digest:0:12})"
  done
}

command=${1:-all}
case $command in
  all)
    start=$SECONDS
    install_tools
    build_all
    start_registry
    push_all
    collect_registry_garbage
    say "done in $((SECONDS - start)) s; the registry keeps running (stop it with: scripts/images.sh stop)"
    ;;
  build)
    install_tools
    build_all
    for name in "${images[@]}"; do
      say "$name: oci:$layout:${tags[$name]} ($(image_size "${tags[$name]}"))"
    done
    ;;
  berth)
    start=$SECONDS
    install_tools
    build_berth
    start_registry
    for tag in "$berth_version" latest; do
      skopeo copy --quiet --dest-tls-verify=false "oci:$berth_layout:$berth_tag" "docker://$registry/$REF:$tag"
    done
    digest=$(skopeo inspect --raw --tls-verify=false "docker://$registry/$REF:$berth_version" | sha256sum | cut -d' ' -f1)
    say "berth: $registry/$REF:$berth_version and :latest ($(image_size "$berth_tag" "$berth_layout"), sha256:${digest:0:12})"
    collect_registry_garbage
    say "done in $((SECONDS - start)) s; push it elsewhere with: skopeo copy oci:$berth_layout:$berth_version docker://REGISTRY/berth:$berth_version"
    ;;
  build-berth)
    install_tools
    build_berth
    say "berth: oci:$berth_layout:$berth_version and oci:$berth_layout:latest ($(image_size "$berth_tag" "$berth_layout"))"
    ;;
  stop) stop_registry ;;
  *) die "unknown command $command (all | build | berth | build-berth | stop)" ;;
esac
