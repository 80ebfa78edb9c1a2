//! Which kernel family runs: detected from the CPU once, overridable downwards by `T5G_KERNEL`.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// A family of kernels, each needing a set of CPU features. On one architecture the levels are
/// ordered: a CPU that supports a level supports every lower one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum KernelLevel {
    /// Portable Rust; the reference every other level is tested against.
    Scalar = 1,
    /// x86-64 AVX2 + FMA + F16C (`maddubs` int8 products).
    Avx2 = 2,
    /// x86-64 AVX-512 F/BW/VL (512-bit `maddubs`).
    Avx512 = 3,
    /// x86-64 AVX-512 VNNI (`vpdpbusd`).
    Avx512Vnni = 4,
    /// aarch64 Advanced SIMD (`smull` + `sadalp`).
    Neon = 5,
    /// aarch64 with the dot-product extension (`sdot`).
    Dotprod = 6,
}

impl KernelLevel {
    /// Every level, lowest first within each architecture.
    pub const ALL: [KernelLevel; 6] = [
        KernelLevel::Scalar,
        KernelLevel::Avx2,
        KernelLevel::Avx512,
        KernelLevel::Avx512Vnni,
        KernelLevel::Neon,
        KernelLevel::Dotprod,
    ];

    /// The spelling used by `T5G_KERNEL`, `t5g info` and `bench --json`.
    pub fn name(self) -> &'static str {
        match self {
            KernelLevel::Scalar => "scalar",
            KernelLevel::Avx2 => "avx2",
            KernelLevel::Avx512 => "avx512",
            KernelLevel::Avx512Vnni => "avx512vnni",
            KernelLevel::Neon => "neon",
            KernelLevel::Dotprod => "dotprod",
        }
    }

    /// Parses a [`KernelLevel::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the level's kernels.
    pub fn is_supported(self) -> bool {
        cpu().contains(&self)
    }

    fn from_u8(v: u8) -> Self {
        Self::ALL
            .into_iter()
            .find(|l| *l as u8 == v)
            .expect("stored from a KernelLevel")
    }
}

impl std::fmt::Display for KernelLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The levels this CPU supports, lowest first; always starts with [`KernelLevel::Scalar`].
pub fn supported_levels() -> &'static [KernelLevel] {
    cpu()
}

fn cpu() -> &'static [KernelLevel] {
    static CPU: OnceLock<Vec<KernelLevel>> = OnceLock::new();
    CPU.get_or_init(|| {
        #[allow(unused_mut)]
        let mut levels = vec![KernelLevel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                levels.push(KernelLevel::Avx2);
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
                    levels.push(KernelLevel::Avx512);
                    if has!("avx512vnni") {
                        levels.push(KernelLevel::Avx512Vnni);
                    }
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            use std::arch::is_aarch64_feature_detected as has;
            if has!("neon") {
                levels.push(KernelLevel::Neon);
                if has!("dotprod") {
                    levels.push(KernelLevel::Dotprod);
                }
            }
        }
        levels
    })
}

/// 0 = not chosen yet.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The best supported level, lowered by `T5G_KERNEL` when it is set. An unknown name or a level
/// this CPU cannot run is an error naming the variable and the levels that would work.
pub fn detect() -> Result<KernelLevel> {
    let best = *cpu().last().expect("scalar is always supported");
    match std::env::var("T5G_KERNEL") {
        Ok(want) if !want.trim().is_empty() => {
            let level = KernelLevel::from_name(&want).ok_or_else(|| {
                Error::invalid(format!(
                    "T5G_KERNEL={want}: unknown kernel level (expected one of {})",
                    names(&KernelLevel::ALL)
                ))
            })?;
            check(level).map_err(|e| Error::invalid(format!("T5G_KERNEL={want}: {e}")))?;
            Ok(level)
        }
        _ => Ok(best),
    }
}

fn names(levels: &[KernelLevel]) -> String {
    levels
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(level: KernelLevel) -> Result<()> {
    if level.is_supported() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "kernel level {level} is not supported by this CPU (supported: {})",
            names(cpu())
        )))
    }
}

/// Makes `level` the one [`crate::kernels::matmul`] uses from now on (process-wide).
pub fn set_level(level: KernelLevel) -> Result<()> {
    check(level)?;
    ACTIVE.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// The level in use. On first use it is [`detect`]ed; if `T5G_KERNEL` is invalid the best
/// supported level is used and a warning printed once — callers that want the error (the CLI)
/// call [`detect`] + [`set_level`] themselves at start-up.
pub fn level() -> KernelLevel {
    match ACTIVE.load(Ordering::Relaxed) {
        0 => {
            let level = detect().unwrap_or_else(|e| {
                eprintln!("warning: {e}; using the best supported level");
                *cpu().last().expect("scalar is always supported")
            });
            // A concurrent set_level wins over detection.
            let _ = ACTIVE.compare_exchange(0, level as u8, Ordering::Relaxed, Ordering::Relaxed);
            KernelLevel::from_u8(ACTIVE.load(Ordering::Relaxed))
        }
        v => KernelLevel::from_u8(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for l in KernelLevel::ALL {
            assert_eq!(KernelLevel::from_name(l.name()), Some(l));
        }
        assert_eq!(KernelLevel::from_name("AVX2"), Some(KernelLevel::Avx2));
        assert_eq!(KernelLevel::from_name("sse"), None);
    }

    #[test]
    fn scalar_always_supported_and_unsupported_refused() {
        assert_eq!(supported_levels()[0], KernelLevel::Scalar);
        let foreign = if cfg!(target_arch = "x86_64") {
            KernelLevel::Neon
        } else {
            KernelLevel::Avx2
        };
        let err = check(foreign).unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
        assert!(check(KernelLevel::Scalar).is_ok());
    }
}
