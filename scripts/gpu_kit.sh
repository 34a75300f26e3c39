#!/usr/bin/env bash
# Pack what a bare, offline GPU machine lacks for training the default model into .gpukit/
# (git-ignored, about 17 MB, small enough to travel with the working tree):
#
#   .gpukit/espeak/      espeak-ng 1.51 from this machine's Debian packages, unpacked, with a
#                        wrapper (bin/espeak-ng) that finds its own libraries and voice data.
#                        Same version as here, so `diffwave corpus` there writes the same corpus,
#                        byte for byte, as here (no 220 MB of wavs to carry).
#   .gpukit/lib/         libpcaudio.so.0, a stub built here: espeak-ng links the audio-playback
#                        library, which pulls in ALSA and PulseAudio; writing wavs never plays
#                        sound, so the stub's functions only report "no audio device".
#   .gpukit/wheels/      soundfile, cffi and pycparser for the GPU machine's Python (default 3.12).
#
# Then, on the GPU machine: scripts/gpu_train.sh (see there). Needs apt-get download, gcc, pip.
# usage: scripts/gpu_kit.sh [PYTHON_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${1:-3.12}
kit=.gpukit
rm -rf "$kit"
mkdir -p "$kit/debs" "$kit/espeak" "$kit/lib" "$kit/wheels"

(cd "$kit/debs" && apt-get download -q espeak-ng espeak-ng-data libespeak-ng1 libsonic0 2>/dev/null)
for deb in "$kit"/debs/*.deb; do dpkg -x "$deb" "$kit/espeak"; done
rm -rf "$kit/debs" "$kit/espeak/usr/share/doc" "$kit/espeak/usr/share/man" "$kit/espeak/usr/share/lintian"

cat >"$kit/pcaudio_stub.c" <<'EOF'
/* libpcaudio ABI stub: espeak-ng writing wav files never opens an audio device. */
#include <stddef.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *device, const char *application, const char *description) {
  (void)device; (void)application; (void)description; return NULL;
}
int audio_object_open(struct audio_object *o, int format, unsigned int rate, unsigned char channels) {
  (void)o; (void)format; (void)rate; (void)channels; return -1;
}
void audio_object_close(struct audio_object *o) { (void)o; }
void audio_object_destroy(struct audio_object *o) { (void)o; }
int audio_object_write(struct audio_object *o, const void *data, size_t bytes) { (void)o; (void)data; (void)bytes; return -1; }
int audio_object_drain(struct audio_object *o) { (void)o; return -1; }
int audio_object_flush(struct audio_object *o) { (void)o; return -1; }
const char *audio_object_strerror(struct audio_object *o, int error) { (void)o; (void)error; return "no audio device (stub)"; }
EOF
gcc -O2 -shared -fPIC -Wl,-soname,libpcaudio.so.0 -o "$kit/lib/libpcaudio.so.0" "$kit/pcaudio_stub.c"
rm "$kit/pcaudio_stub.c"

mkdir -p "$kit/espeak/bin"
cat >"$kit/espeak/bin/espeak-ng" <<'EOF'
#!/usr/bin/env bash
# espeak-ng from .gpukit: its own libraries first, its own voice data.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LD_LIBRARY_PATH="$here/../lib:$here/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/usr/bin/espeak-ng" --path="$here/usr/lib/x86_64-linux-gnu" "$@"
EOF
chmod +x "$kit/espeak/bin/espeak-ng"

python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$kit/wheels" soundfile cffi pycparser

# The packed espeak-ng must speak exactly as this machine's does (that is what makes the corpus
# reproducible there); with only its own libraries visible, not the system's.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
"$kit/espeak/bin/espeak-ng" -v en-us+m3 -w "$probe/kit.wav" "The kit speaks like this machine."
if command -v espeak-ng >/dev/null; then
  espeak-ng -v en-us+m3 -w "$probe/system.wav" "The kit speaks like this machine."
  cmp -s "$probe/kit.wav" "$probe/system.wav" || { echo "error: the packed espeak-ng speaks differently from $(command -v espeak-ng)" >&2; exit 1; }
fi
echo "$kit: $(du -sh "$kit" | cut -f1) ($(ls "$kit/wheels" | tr '\n' ' '))"
