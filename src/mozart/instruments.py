"""General MIDI instrument names, for legends, prompts and the studio."""

from __future__ import annotations

from .events import DRUM_OFFSET

#: The 128 General MIDI Level 1 program names, by program number (0-based).
GM_PROGRAMS = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica",
    "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)", "Electric Guitar (clean)",
    "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass", "Slap Bass 1",
    "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs",
    "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)",
    "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)",
    "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)",
    "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring", "Helicopter", "Applause",
    "Gunshot",
)
assert len(GM_PROGRAMS) == 128


def stream_name(stream: int) -> str:
    """'Violin (40)' (0-based program) for a melodic stream, 'Drums (kit 0)' for a drum stream."""
    if stream >= DRUM_OFFSET:
        return f"Drums (kit {stream - DRUM_OFFSET})"
    return f"{GM_PROGRAMS[stream]} ({stream})"


#: Usual sounding ranges (MIDI pitches, inclusive) by General MIDI program, from orchestration
#: references (written ranges transposed to sounding pitch, rounded outwards).  New notes that
#: infilling or accompaniment write for a program stay inside its range, so a bass line stays
#: low and a flute line high; notes read from a file are never checked against it.
_RANGES = (
    (range(0, 8), (21, 108)),      # pianos, harpsichord, clavinet
    (range(8, 16), (48, 108)),     # chromatic percussion
    (range(16, 24), (36, 96)),     # organs, accordion, harmonica
    (range(24, 32), (40, 88)),     # guitars
    (range(32, 40), (28, 67)),     # basses
    (40, (55, 103)), (41, (48, 91)), (42, (36, 76)), (43, (28, 67)),  # violin, viola, cello, contrabass
    (range(44, 47), (28, 103)), (47, (36, 57)),  # tremolo/pizzicato strings, harp; timpani
    (range(48, 56), (28, 96)),     # ensembles, choirs, orchestra hit
    (56, (54, 86)), (57, (40, 77)), (58, (28, 58)), (59, (54, 86)), (60, (34, 77)),  # trumpet .. French horn
    (range(61, 64), (34, 86)),     # brass sections
    (64, (56, 88)), (65, (49, 81)), (66, (44, 76)), (67, (36, 69)),  # soprano .. baritone sax
    (68, (58, 93)), (69, (52, 81)), (70, (34, 75)), (71, (50, 94)),  # oboe, English horn, bassoon, clarinet
    (72, (74, 108)), (range(73, 80), (60, 98)),  # piccolo; flutes and the like
    (range(80, 104), (36, 96)),    # synth leads, pads, effects
    (range(104, 112), (48, 91)),   # ethnic (sitar .. shanai)
    (range(112, 128), (36, 96)),   # percussive and sound effects
)
#: Keys of the General MIDI percussion map (drum streams): Acoustic Bass Drum .. Open Triangle.
DRUM_KEYS = (35, 81)


def pitch_range(stream: int) -> tuple[int, int]:
    """The usual (lowest, highest) MIDI pitch of a stream: a program's range, or the GM drum keys."""
    if stream >= DRUM_OFFSET:
        return DRUM_KEYS
    for programs, bounds in _RANGES:
        if stream in (programs if isinstance(programs, range) else (programs,)):
            return bounds
    raise ValueError(f"program {stream}: expected 0..127")
