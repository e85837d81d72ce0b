//! A word-at-a-time `memcmp` for the guest.
//!
//! Rust compiles `==` and `cmp` on strings and byte slices (serde's field
//! names, the interner's keys, action types) to calls of the C `memcmp`. In a
//! `wasm32-wasip2` component that is wasi-libc's, a loop over single bytes:
//! about 10% of the sandboxed Meta parse (`perf` with JIT names, 2026-12-04).
//! [`compare`] reads 8 bytes at a time while they are equal and answers as
//! `memcmp` does; on `wasm32` the crate exports it as `memcmp`, which the
//! linker then takes instead of wasi-libc's (an archive member is only pulled
//! in for a symbol nothing else defines). Natively nothing is exported: the
//! tests check [`compare`] against the standard library's ordering.

/// Compare the first `min(a.len(), b.len())` bytes of two slices as C's
/// `memcmp` does: zero when equal, otherwise the difference of the first
/// differing bytes (as unsigned).
pub fn compare(a: &[u8], b: &[u8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut words_a = a.chunks_exact(8);
    let mut words_b = b.chunks_exact(8);
    let mut offset = 0;
    for (x, y) in words_a.by_ref().zip(words_b.by_ref()) {
        let (x, y) = (word(x), word(y));
        if x != y {
            // Little-endian: the lowest differing byte is the first in memory.
            let first = offset + ((x ^ y).trailing_zeros() / 8) as usize;
            return i32::from(a[first]) - i32::from(b[first]);
        }
        offset += 8;
    }
    for (x, y) in words_a.remainder().iter().zip(words_b.remainder()) {
        if x != y {
            return i32::from(*x) - i32::from(*y);
        }
    }
    0
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

#[cfg(all(target_arch = "wasm32", not(test)))]
#[allow(unsafe_code)] // the C symbol's raw-pointer contract
mod export {
    /// C's `memcmp`, for everything linked into the component.
    ///
    /// # Safety
    /// `a` and `b` point to at least `n` readable bytes (C's contract).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        if n == 0 {
            return 0;
        }
        // SAFETY: `memcmp`'s contract; `n > 0`, so neither pointer is null.
        let (a, b) = unsafe {
            (
                core::slice::from_raw_parts(a, n),
                core::slice::from_raw_parts(b, n),
            )
        };
        super::compare(a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering;

    fn sign(v: i32) -> Ordering {
        v.cmp(&0)
    }

    #[test]
    fn agrees_with_the_standard_ordering_at_every_length_and_position() {
        for len in 0..40usize {
            let base: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(compare(&base, &base), 0, "equal, length {len}");
            for at in 0..len {
                for delta in [1u8, 0x7f, 0x80, 0xff] {
                    let mut other = base.clone();
                    other[at] = other[at].wrapping_add(delta);
                    // A later difference must not hide the first one.
                    if at + 1 < len {
                        let last = len - 1;
                        other[last] = other[last].wrapping_sub(delta);
                    }
                    let got = compare(&base, &other);
                    assert_eq!(sign(got), base.cmp(&other), "length {len}, at {at}");
                    assert_eq!(got, i32::from(base[at]) - i32::from(other[at]));
                    assert_eq!(compare(&other, &base), -got);
                }
            }
        }
    }

    #[test]
    fn field_names_compare_as_strings_do() {
        let names = [
            "date_start",
            "date_stop",
            "spend",
            "impressions",
            "offsite_conversion.fb_pixel_purchase",
            "offsite_conversion.fb_pixel_lead",
            "",
        ];
        for a in names {
            for b in names {
                if a.len() == b.len() {
                    assert_eq!(sign(compare(a.as_bytes(), b.as_bytes())), a.cmp(b));
                }
            }
        }
    }
}
