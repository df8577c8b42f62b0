"""Synthetic single-lead (MLII) arrhythmia waveforms for the embedded Fragment-DB default.

Beats are sums of Gaussian waves (P, Q, R, S and a two-Gaussian T). A beat template is an array
of shape (6, 3): one row per wave (``P, Q, R, S, T1, T2``), columns ``amp`` (mV), ``offset`` (s,
from the beat's R time) and ``sigma`` (s). Every rhythm function renders one *episode* as a
continuous signal of shape (n_samples,) in mV; fragments are cut from episodes, never synthesised
in isolation. Fibrillation and flutter waves are phase oscillators with wandering frequency and
amplitude. The second half of the module lays out patients and episodes of the Fragment-DB tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

P, Q, R, S, T1, T2 = range(6)
AMP, OFFSET, SIGMA = range(3)

# Rate ranges (beats or waves per minute) per rhythm code.
RATE_BPM = {
    "N": (60.0, 100.0), "PVC": (58.0, 100.0), "B": (58.0, 95.0), "T": (58.0, 100.0),
    "SVTA": (145.0, 220.0), "AFIB": (85.0, 170.0), "AFL": (250.0, 330.0),
    "VT": (140.0, 220.0), "VTTdP": (180.0, 280.0), "VFL": (240.0, 300.0),
}


@dataclass(frozen=True)
class Patient:
    """One simulated source record: its morphology and nuisance levels (all amplitudes in mV)."""

    source_id: int
    sinus: np.ndarray       # (6, 3) conducted (supraventricular) beat at 60 bpm
    ectopic: np.ndarray     # (6, 3) beat of the patient's ventricular focus
    gain: float             # amplitude scale of the cardiac signal
    noise_mv: float         # white noise standard deviation
    emg_mv: float           # EMG-like (20-90 Hz) noise standard deviation inside bursts
    wander_mv: float        # baseline wander amplitude


def draw_patient(source_id: int, rng: np.random.Generator) -> Patient:
    """Draw one patient: QRS width, axis/polarity, T polarity, ectopic focus, gain and noise."""
    return Patient(
        source_id=source_id, sinus=_sinus_template(rng), ectopic=_ectopic_template(rng),
        gain=float(rng.lognormal(0.0, 0.3)), noise_mv=float(rng.lognormal(np.log(0.015), 0.5)),
        emg_mv=float(rng.uniform(0.0, 0.06)), wander_mv=float(rng.uniform(0.05, 0.35)),
    )


def _sinus_template(rng: np.random.Generator) -> np.ndarray:
    """Conducted beat: P wave, narrow QRS (wide when a bundle-branch block is drawn), T wave."""
    qrs_s = rng.uniform(0.12, 0.15) if rng.random() < 0.2 else rng.uniform(0.07, 0.105)
    r_amp = rng.uniform(0.6, 1.5) * (0.35 if rng.random() < 0.15 else 1.0)  # small r: leftward axis
    t_amp = rng.uniform(0.12, 0.4) * (-1.0 if rng.random() < 0.15 else 1.0)
    t_off = rng.uniform(0.24, 0.32)
    return np.array([
        [rng.uniform(0.06, 0.22), -rng.uniform(0.13, 0.2), rng.uniform(0.018, 0.03)],
        [-rng.uniform(0.0, 0.15), -0.3 * qrs_s, qrs_s / 10],
        [r_amp, 0.0, qrs_s / 7.5],
        [-rng.uniform(0.1, 0.6), 0.3 * qrs_s, qrs_s / 9],
        [t_amp, t_off, rng.uniform(0.04, 0.06)],
        [0.4 * t_amp, t_off + 0.05, 0.03],
    ])


def _ectopic_template(rng: np.random.Generator) -> np.ndarray:
    """Ventricular beat: no P, wide QRS of either polarity, large discordant T."""
    qrs_s = rng.uniform(0.12, 0.2)
    sign = 1.0 if rng.random() < 0.6 else -1.0
    t_amp = -sign * rng.uniform(0.25, 0.6)
    t_off = rng.uniform(0.24, 0.32)
    return np.array([
        [0.0, -0.15, 0.02],
        [-sign * rng.uniform(0.0, 0.2), -0.3 * qrs_s, qrs_s / 8],
        [sign * rng.uniform(0.8, 1.8), 0.0, qrs_s / 6],
        [-sign * rng.uniform(0.1, 0.8), 0.4 * qrs_s, qrs_s / 5],
        [t_amp, t_off, rng.uniform(0.06, 0.09)],
        [0.3 * t_amp, t_off + 0.06, 0.04],
    ])


def render_waves(n_samples: int, fs: float, centre_s, amp_mv, sigma_s) -> np.ndarray:
    """Sum of Gaussian waves on a grid of n_samples at fs Hz.

    centre_s, amp_mv and sigma_s broadcast to one shape (e.g. (n_beats, 6)); returns (n_samples,)
    in mV.
    """
    centre, amp, sigma = (np.ravel(a) for a in np.broadcast_arrays(centre_s, amp_mv, sigma_s))
    keep = amp != 0
    centre, amp, sigma = centre[keep], amp[keep], sigma[keep]
    if centre.size == 0:
        return np.zeros(n_samples)
    half = int(np.ceil(4.0 * sigma.max() * fs))
    idx = np.round(centre * fs).astype(int)[:, None] + np.arange(-half, half + 1)
    val = amp[:, None] * np.exp(-0.5 * ((idx / fs - centre[:, None]) / sigma[:, None]) ** 2)
    inside = (idx >= 0) & (idx < n_samples)
    return np.bincount(idx[inside], weights=val[inside], minlength=n_samples)


def render_beats(n_samples: int, fs: float, template: np.ndarray, beat_s: np.ndarray,
                 rr_s: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render beats of one template at R times beat_s (n_beats,) with preceding RR rr_s (n_beats,).

    P and T offsets follow the rate (T by Bazett's square root of RR), scale (n_beats,) or
    (n_beats, 6) multiplies wave amplitudes, and every wave gets a small random jitter.
    """
    n_beats = beat_s.size
    if n_beats == 0:
        return np.zeros(n_samples)
    rate_fac = np.clip(rr_s, 0.25, 1.5)[:, None]
    offset = np.broadcast_to(template[:, OFFSET], (n_beats, 6)).copy()
    sigma = np.broadcast_to(template[:, SIGMA], (n_beats, 6)).copy()
    offset[:, [T1, T2]] *= np.sqrt(rate_fac)
    sigma[:, [T1, T2]] *= np.sqrt(rate_fac)
    offset[:, P] *= rate_fac[:, 0] ** 0.25
    amp = template[:, AMP] * np.broadcast_to(scale.reshape(n_beats, -1), (n_beats, 6))
    amp = amp * (1.0 + 0.04 * rng.standard_normal((n_beats, 6)))
    offset = offset + 0.002 * rng.standard_normal((n_beats, 6))
    return render_waves(n_samples, fs, beat_s[:, None] + offset, amp, sigma)


def beat_times(duration_s: float, rate_bpm: float, rng: np.random.Generator,
               jitter: float = 0.01, rsa: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Regular beat times (s) with RR jitter and respiratory modulation; returns (times, rr_s)."""
    rr0 = 60.0 / rate_bpm
    n_beats = int(np.ceil((duration_s + 2.0) / (rr0 * 0.7))) + 2
    phase = rng.uniform(0, 2 * np.pi)
    k = np.arange(n_beats)
    rsa_term = rsa * np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * k * rr0 + phase)
    rr = rr0 * (1.0 + jitter * rng.standard_normal(n_beats) + rsa_term)
    times = np.cumsum(rr) - rng.uniform(0.5, 1.0) - rr[0]
    keep = times < duration_s + 0.5
    return times[keep], rr[keep]


def smooth_noise(n_samples: int, fs: float, cutoff_hz: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Unit-variance low-pass Gaussian noise, shape (n_samples,)."""
    return _filtered_noise(n_samples, fs, sps.butter(2, cutoff_hz, "low", fs=fs, output="sos"), rng)


def band_noise(n_samples: int, fs: float, band_hz: tuple[float, float],
               rng: np.random.Generator) -> np.ndarray:
    """Unit-variance band-pass Gaussian noise, shape (n_samples,)."""
    return _filtered_noise(n_samples, fs, sps.butter(2, band_hz, "band", fs=fs, output="sos"), rng)


def _filtered_noise(n_samples: int, fs: float, sos: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """White noise through sos (zero phase), 1 s margins cut off, scaled to unit variance."""
    margin = int(fs)
    x = sps.sosfiltfilt(sos, rng.standard_normal(n_samples + 2 * margin))[margin:margin + n_samples]
    return x / (x.std() + 1e-12)


def _oscillator(n_samples: int, fs: float, freq_hz: np.ndarray, amp_mv: np.ndarray,
                harmonics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phase oscillator with per-sample frequency and amplitude; harmonics (k,) relative weights."""
    phase = 2 * np.pi * np.cumsum(freq_hz) / fs + rng.uniform(0, 2 * np.pi)
    wave = np.sin(phase)
    for order, weight in enumerate(harmonics, start=2):
        wave += weight * np.sin(order * phase + rng.uniform(0, 2 * np.pi))
    return amp_mv * wave


def rate_for(code: str, rng: np.random.Generator) -> float:
    """Draw an episode rate (per minute) for a rhythm code."""
    lo, hi = RATE_BPM[code]
    return float(rng.uniform(lo, hi))


def sinus(p: Patient, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Normal sinus rhythm 60-100 bpm: regular with respiratory sinus arrhythmia, P waves."""
    t, rr = beat_times(n / fs, rate_for("N", rng), rng, jitter=0.015, rsa=rng.uniform(0.0, 0.05))
    return render_beats(n, fs, p.sinus, t, rr, np.ones(t.size), rng)


def ventricular_ectopy(p: Patient, n: int, fs: float, rng: np.random.Generator,
                       code: str) -> np.ndarray:
    """Sinus rhythm with premature wide beats: isolated PVCs, bigeminy (B) or trigeminy (T).

    A PVC replaces sinus beat k at a fixed coupling interval after beat k-1; the sinus grid goes on,
    which gives the compensatory pause.
    """
    t, rr = beat_times(n / fs, rate_for(code, rng), rng, jitter=0.015, rsa=rng.uniform(0.0, 0.04))
    k = np.arange(t.size)
    if code == "B":
        is_pvc = k % 2 == rng.integers(2)
    elif code == "T":
        is_pvc = k % 3 == rng.integers(3)
    else:
        is_pvc = rng.random(t.size) < rng.uniform(0.15, 0.35)
    is_pvc[0] = False
    coupling = rng.uniform(0.45, 0.7)
    pvc_t = t[np.flatnonzero(is_pvc) - 1] + coupling * rr[is_pvc]
    x = render_beats(n, fs, p.sinus, t[~is_pvc], rr[~is_pvc], np.ones((~is_pvc).sum()), rng)
    scale = rng.uniform(0.85, 1.15, size=pvc_t.size)
    return x + render_beats(n, fs, p.ectopic, pvc_t, coupling * rr[is_pvc], scale, rng)


def supraventricular_tachycardia(p: Patient, n: int, fs: float,
                                 rng: np.random.Generator) -> np.ndarray:
    """SVT 145-220 bpm: regular narrow complexes, retrograde P just after the QRS or hidden."""
    t, rr = beat_times(n / fs, rate_for("SVTA", rng), rng, jitter=0.008)
    template = p.sinus.copy()
    template[P] = [-abs(template[P, AMP]) * rng.uniform(0.0, 0.8), rng.uniform(0.06, 0.1), 0.02]
    return render_beats(n, fs, template, t, rr, np.ones(t.size), rng)


def atrial_fibrillation(p: Patient, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """AF: irregularly irregular RR (log-normal, CV 12-30 %), no P waves, 4-9 Hz f-waves."""
    mean_rr = 60.0 / rate_for("AFIB", rng)
    rr = mean_rr * rng.lognormal(0.0, rng.uniform(0.12, 0.3), size=int(n / fs / mean_rr * 2) + 8)
    rr = np.maximum(rr, 0.28)
    t = np.cumsum(rr) - rng.uniform(1.0, 2.0)
    template = p.sinus.copy()
    template[P, AMP] = 0.0
    x = render_beats(n, fs, template, t, rr, np.ones(t.size), rng)
    return x + rng.uniform(0.02, 0.12) * band_noise(n, fs, (4.0, 9.0), rng)


def atrial_flutter(p: Patient, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Atrial flutter: sawtooth F waves at 250-330/min, 2:1, 3:1, 4:1 or variable conduction."""
    f_hz = rate_for("AFL", rng) / 60.0
    tt = np.arange(n) / fs
    x = -rng.uniform(0.06, 0.2) * sps.sawtooth(2 * np.pi * f_hz * tt + rng.uniform(0, 6.3), 0.8)
    ratios = rng.choice([2, 4], size=int(n / fs * f_hz) + 4) if rng.random() < 0.3 else \
        np.full(int(n / fs * f_hz) + 4, rng.choice([2, 2, 3, 4]))
    t = np.cumsum(ratios / f_hz) + rng.uniform(0.15, 0.25) - rng.uniform(1.0, 2.0)
    template = p.sinus.copy()
    template[P, AMP] = 0.0
    return x + render_beats(n, fs, template, t, ratios / f_hz, np.ones(t.size), rng)


def ventricular_tachycardia(p: Patient, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Monomorphic VT 140-220 bpm: regular wide complexes, dissociated sinus P waves."""
    t, rr = beat_times(n / fs, rate_for("VT", rng), rng, jitter=rng.uniform(0.005, 0.03))
    x = render_beats(n, fs, p.ectopic, t, rr, np.full(t.size, rng.uniform(0.8, 1.3)), rng)
    tp, rrp = beat_times(n / fs, rng.uniform(60, 90), rng)
    p_only = np.zeros_like(p.sinus)
    p_only[P] = p.sinus[P]
    return x + render_beats(n, fs, p_only, tp, rrp, np.ones(tp.size), rng)


def torsade(p: Patient, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Torsade de pointes 180-280 bpm: two wide morphologies mixed by a rotating axis angle.

    The angle turns once every 1.2-3 s, so amplitude waxes and wanes and the polarity twists around
    the baseline.
    """
    t, rr = beat_times(n / fs, rate_for("VTTdP", rng), rng, jitter=rng.uniform(0.03, 0.08))
    angle = 2 * np.pi * t / rng.uniform(1.2, 3.0) + rng.uniform(0, 2 * np.pi)
    size = rng.uniform(0.9, 1.6)
    other = p.ectopic.copy()
    other[[R, S], AMP] = -other[[S, R], AMP]
    other[:, SIGMA] *= rng.uniform(0.8, 1.2)
    x = render_beats(n, fs, p.ectopic, t, rr, size * np.cos(angle), rng)
    return x + render_beats(n, fs, other, t, rr, 0.7 * size * np.sin(angle), rng)


def ventricular_flutter(p: Patient, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """VFL: regular sine-like large waves at 240-300/min, no isoelectric line."""
    f_hz = rate_for("VFL", rng) / 60.0 * (1.0 + 0.03 * smooth_noise(n, fs, 0.5, rng))
    amp = rng.uniform(0.6, 1.6) * (1.0 + 0.15 * smooth_noise(n, fs, 0.4, rng))
    return _oscillator(n, fs, f_hz, amp, rng.uniform(0.0, 0.3, size=2), rng)


def ventricular_fibrillation(p: Patient, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """VF: chaotic 4-10 Hz waves, wandering frequency, coarse-to-fine varying amplitude."""
    f_hz = np.clip(rng.uniform(4.5, 7.5) + 1.0 * smooth_noise(n, fs, 1.5, rng), 3.5, 10.0)
    amp = rng.uniform(0.2, 0.9) * np.exp(0.45 * smooth_noise(n, fs, rng.uniform(0.5, 2.0), rng))
    x = _oscillator(n, fs, f_hz, amp, rng.uniform(0.0, 0.5, size=2), rng)
    return x + 0.3 * amp * band_noise(n, fs, (3.0, 12.0), rng)


def nuisance(n: int, fs: float, p: Patient, rng: np.random.Generator) -> np.ndarray:
    """White noise, bursty EMG-like 20-90 Hz noise and baseline wander (mV); no powerline."""
    level = rng.uniform(0.5, 1.5)
    white = level * p.noise_mv * rng.standard_normal(n)
    bursts = 1.0 / (1.0 + np.exp(-3.0 * (smooth_noise(n, fs, 0.5, rng) - 1.0)))
    emg = level * p.emg_mv * bursts * band_noise(n, fs, (20.0, 90.0), rng)
    tt = np.arange(n) / fs
    freqs = rng.uniform(0.05, 0.45, size=3)
    wander = sum(np.sin(2 * np.pi * f * tt + rng.uniform(0, 6.3)) for f in freqs) / np.sqrt(3)
    return white + emg + p.wander_mv * wander


RHYTHMS = {
    "N": sinus,
    "PVC": lambda p, n, fs, rng: ventricular_ectopy(p, n, fs, rng, "PVC"),
    "B": lambda p, n, fs, rng: ventricular_ectopy(p, n, fs, rng, "B"),
    "T": lambda p, n, fs, rng: ventricular_ectopy(p, n, fs, rng, "T"),
    "SVTA": supraventricular_tachycardia, "AFIB": atrial_fibrillation, "AFL": atrial_flutter,
    "VT": ventricular_tachycardia, "VTTdP": torsade,
    "VFL": ventricular_flutter, "VF": ventricular_fibrillation,
}


def simulate_episode(p: Patient, code: str, duration_s: float, fs: float,
                     rng: np.random.Generator) -> np.ndarray:
    """One continuous episode of rhythm `code` for patient p, with nuisance; shape (n,), mV."""
    n = int(round(duration_s * fs))
    return p.gain * RHYTHMS[code](p, n, fs, rng) + nuisance(n, fs, p, rng)


# ----------------------------------------------------------------------------------------------
# Fragment-DB tree: which patient contributes which episodes, and the WFDB files.

CLASS_FOLDERS = ("1_Dangerous_VFL_VF", "2_Special_Form_VTTdP", "3_Threatening_VT",
                 "4_Potential_Dangerous", "5_Supraventricular", "6_Sinus_rhythm")
CLASS_SHARE = (0.15, 0.05, 0.10, 0.25, 0.10, 0.35)
CLASS_CODES = (("VF", "VFL"), ("VTTdP",), ("VT",), ("PVC", "B", "T"), ("SVTA", "AFIB", "AFL"),
               ("N",))
CODE_WEIGHTS = ((0.6, 0.4), (1.0,), (1.0,), (0.5, 0.3, 0.2), (0.45, 0.4, 0.15), (1.0,))
# Patient archetypes: (classes always present, classes present with probability 0.4), and how
# often each archetype occurs: malignant, torsade, ventricular, supraventricular, ectopy.
ARCHETYPES = (((0, 2, 5), (1, 3)), ((1, 3, 5), (0, 2)), ((2, 3), (0, 5)),
              ((4, 5), (3,)), ((3, 5), (4, 2)))
ARCHETYPE_SHARE = (0.25, 0.1, 0.2, 0.2, 0.25)
FRAGMENT_S = 2.0
FRAGS_PER_EPISODE = 6


@dataclass(frozen=True)
class Episode:
    """A stretch of one rhythm in one source record, and the fragment offsets cut from it (s)."""

    patient: Patient
    label: int
    code: str
    start_s: float                  # offset of the episode in the source record
    fragment_s: tuple[float, ...]   # fragment offsets relative to start_s, multiples of 0.5 s
    duration_s: float


def _draw_memberships(n_records: int, min_records: int, rng: np.random.Generator) -> list[set[int]]:
    """Class set of each record from archetypes, then topped up so every class has min_records."""
    n_kind = np.maximum(1, np.round(np.array(ARCHETYPE_SHARE) * n_records)).astype(int)
    kinds = rng.permutation(np.resize(np.repeat(np.arange(len(ARCHETYPES)), n_kind), n_records))
    members = []
    for kind in kinds:
        always, maybe = ARCHETYPES[kind]
        members.append(set(always) | {c for c in maybe if rng.random() < 0.4})
    for label in range(len(CLASS_FOLDERS)):
        lacking = [i for i, m in enumerate(members) if label not in m]
        missing = min_records - (n_records - len(lacking))
        for i in rng.permutation(lacking)[:max(missing, 0)]:
            members[i].add(label)
    return members


def _class_counts(n_fragments: int, min_per_class: int) -> np.ndarray:
    """Fragments per class from CLASS_SHARE, at least min_per_class; sinus absorbs the rest."""
    counts = np.maximum(np.round(np.array(CLASS_SHARE) * n_fragments).astype(int), min_per_class)
    counts[-1] += n_fragments - counts.sum()
    if counts[-1] < min_per_class:
        raise ValueError(f"n_fragments={n_fragments} too small for 6 classes of {min_per_class}")
    return counts


def _split_counts(total: int, n_parts: int, rng: np.random.Generator) -> np.ndarray:
    """Split total into n_parts positive, unequal integers (Dirichlet weights)."""
    n_parts = min(n_parts, total)
    extra = rng.multinomial(total - n_parts, rng.dirichlet(np.full(n_parts, 1.2)))
    return 1 + extra


def plan_episodes(n_records: int, n_fragments: int, rng: np.random.Generator,
                  min_records: int = 3, min_per_class: int = 8) -> list[Episode]:
    """Draw patients and lay out non-overlapping episodes along each source record."""
    ids = np.sort(rng.choice(np.arange(400, 700), size=n_records, replace=False))
    patients = [draw_patient(int(i), rng) for i in ids]
    members = _draw_memberships(n_records, min_records, rng)
    pieces: dict[int, list[tuple[int, int]]] = {i: [] for i in range(n_records)}
    for label, count in enumerate(_class_counts(n_fragments, min_per_class)):
        owners = rng.permutation([i for i, m in enumerate(members) if label in m])
        for owner, n_owned in zip(owners, _split_counts(int(count), len(owners), rng)):
            sizes = _split_counts(int(n_owned), -(-int(n_owned) // FRAGS_PER_EPISODE), rng)
            pieces[owner] += [(label, int(s)) for s in sizes]
    episodes = []
    for owner, items in pieces.items():
        cursor = float(rng.uniform(10, 120))
        for k in rng.permutation(len(items)):
            episode = _draw_episode(patients[owner], *items[k], cursor, rng)
            episodes.append(episode)
            cursor = episode.start_s + episode.duration_s + rng.uniform(5, 150)
    return episodes


def _draw_episode(p: Patient, label: int, n_frag: int, cursor_s: float,
                  rng: np.random.Generator) -> Episode:
    """An episode of class `label` from cursor_s (rounded to 0.5 s) that holds n_frag fragments."""
    code = str(rng.choice(CLASS_CODES[label], p=CODE_WEIGHTS[label]))
    offsets, t = [], np.round(2 * rng.uniform(0.5, 3.0)) / 2
    for _ in range(n_frag):
        offsets.append(float(t))
        t += FRAGMENT_S + np.round(2 * rng.uniform(0.0, 8.0)) / 2
    start = np.round(2 * cursor_s) / 2
    duration = float(offsets[-1] + FRAGMENT_S + 1.0)
    return Episode(p, label, code, float(start), tuple(offsets), duration)


def fragment_name(source_id: int, code: str, offset_s: float) -> str:
    """Record name in the Fragment-DB style, e.g. 426_C_VF_454_5s_frag for 454.5 s."""
    whole, half = divmod(int(round(offset_s * 2)), 2)
    return f"{source_id:03d}_C_{code}_{whole}{'_5' if half else ''}s_frag"
