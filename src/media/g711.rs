//! G.711 (ITU-T G.711, 1988): µ-law and A-law companding of 8 kHz telephone audio, to and
//! from 16-bit linear samples, and the conversion between the two laws.
//!
//! The encoders and decoders are bit-exact with the ITU-T reference implementation of the
//! standard (G.191, `g711.c`), written from its arithmetic rather than from tables:
//!
//! - µ-law works on 14-bit magnitudes (the sample shifted right by 2) with a bias of 33; a
//!   segment is the position of the magnitude's highest bit, the mantissa the next four
//!   bits, and the code is the one's complement of sign, segment and mantissa. Decoding
//!   gives the middle of the quantization step, so the largest value is ±32124.
//! - A-law works on 12-bit magnitudes (the sample shifted right by 4) in eight segments, the
//!   first two with the same step, and the code has its even bits inverted (XOR 0x55).
//!   Decoding gives the middle of the step: ±8 for the smallest, ±32256 for the largest.
//!
//! Negative samples are taken as their one's complement (`!x`, that is `-x - 1`), as the
//! reference does, so that -1 and 0 share a code and the full range -32768..=32767 encodes
//! without overflow. Decoding is a 256-entry table built at compile time; encoding is the
//! formula (a few shifts and one `leading_zeros`). µ-law <-> A-law conversion goes through
//! linear audio, also as 256-entry tables: a code maps to the other law's code for its
//! decoded value, within half a step of the other law; there and back lands on the same or
//! a neighbouring code.

use crate::kinds::Codec;

/// The µ-law code of linear 0 (a positive zero): silence.
pub const ULAW_SILENCE: u8 = 0xFF;

/// The A-law code of linear 0 (the smallest positive step, +8): silence.
pub const ALAW_SILENCE: u8 = 0xD5;

/// µ-law bias, in 14-bit units: shifts every magnitude so that segment 0 starts at 33.
const ULAW_BIAS: i32 = 33;

/// Largest biased 14-bit µ-law magnitude (8159 + 33): the top of segment 7.
const ULAW_MAX: i32 = 0x1FFF;

/// The linear value of every µ-law code.
static ULAW_TO_LINEAR: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = ulaw_expand(code as u8);
        code += 1;
    }
    table
};

/// The linear value of every A-law code.
static ALAW_TO_LINEAR: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_expand(code as u8);
        code += 1;
    }
    table
};

/// The A-law code of every µ-law code.
static ULAW_TO_ALAW: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_compress(ulaw_expand(code as u8));
        code += 1;
    }
    table
};

/// The µ-law code of every A-law code.
static ALAW_TO_ULAW: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = ulaw_compress(alaw_expand(code as u8));
        code += 1;
    }
    table
};

/// A sample's magnitude for companding: its one's complement when negative.
const fn magnitude(sample: i16) -> i32 {
    let x = sample as i32;
    if x < 0 { !x } else { x }
}

const fn ulaw_compress(sample: i16) -> u8 {
    let mut biased = (magnitude(sample) >> 2) + ULAW_BIAS;
    if biased > ULAW_MAX {
        biased = ULAW_MAX;
    }
    // Biased magnitudes run from 33 (bit 5 set) to 8191 (bit 12): segment 0..=7 is the
    // highest set bit minus 5, and the mantissa the four bits below that bit.
    let top = 31 - (biased as u32).leading_zeros() as i32;
    let segment = top - 5;
    let mantissa = (biased >> (segment + 1)) & 0x0F;
    let code = (segment << 4) | mantissa;
    let sign = if sample >= 0 { 0x80 } else { 0 };
    // A positive sample has the sign bit set once inverted; segment and mantissa inverted.
    ((0x7F ^ code) | sign) as u8
}

const fn ulaw_expand(code: u8) -> i16 {
    let inverted = !code as i32;
    let segment = (inverted >> 4) & 0x07;
    let mantissa = inverted & 0x0F;
    // Step of the segment in 16-bit units; the value is the middle of its step, less the bias.
    let step = 8 << segment;
    let value = (0x80 << segment) + step * mantissa + step / 2 - 4 * ULAW_BIAS;
    (if code & 0x80 == 0 { -value } else { value }) as i16
}

const fn alaw_compress(sample: i16) -> u8 {
    let mut m = magnitude(sample) >> 4;
    if m > 15 {
        // Segments 1..=7: the highest set bit (4..=10) gives the segment, the four bits
        // below it the mantissa.
        let top = 31 - (m as u32).leading_zeros() as i32;
        let segment = top - 3;
        m = (segment << 4) | ((m >> (segment - 1)) & 0x0F);
    }
    let sign = if sample >= 0 { 0x80 } else { 0 };
    ((m | sign) ^ 0x55) as u8
}

const fn alaw_expand(code: u8) -> i16 {
    let x = (code ^ 0x55) as i32 & 0x7F;
    let segment = x >> 4;
    let mut mantissa = x & 0x0F;
    if segment > 0 {
        mantissa += 16;
    }
    let mut value = (mantissa << 4) + 8;
    if segment > 1 {
        value <<= segment - 1;
    }
    (if code & 0x80 == 0 { -value } else { value }) as i16
}

/// The µ-law code of a linear sample.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    ulaw_compress(sample)
}

/// The linear value of a µ-law code.
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TO_LINEAR[usize::from(code)]
}

/// The A-law code of a linear sample.
pub fn linear_to_alaw(sample: i16) -> u8 {
    alaw_compress(sample)
}

/// The linear value of an A-law code.
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TO_LINEAR[usize::from(code)]
}

/// The A-law code nearest a µ-law code (through its linear value).
pub fn ulaw_to_alaw(code: u8) -> u8 {
    ULAW_TO_ALAW[usize::from(code)]
}

/// The µ-law code nearest an A-law code (through its linear value).
pub fn alaw_to_ulaw(code: u8) -> u8 {
    ALAW_TO_ULAW[usize::from(code)]
}

/// The linear value of one code of `codec`.
pub fn decode_sample(codec: Codec, code: u8) -> i16 {
    match codec {
        Codec::Pcmu => ulaw_to_linear(code),
        Codec::Pcma => alaw_to_linear(code),
    }
}

/// The code of one linear sample in `codec`.
pub fn encode_sample(codec: Codec, sample: i16) -> u8 {
    match codec {
        Codec::Pcmu => linear_to_ulaw(sample),
        Codec::Pcma => linear_to_alaw(sample),
    }
}

/// Decodes `codes` of `codec` into `out`, as many as both hold; returns how many.
pub fn decode(codec: Codec, codes: &[u8], out: &mut [i16]) -> usize {
    let table = match codec {
        Codec::Pcmu => &ULAW_TO_LINEAR,
        Codec::Pcma => &ALAW_TO_LINEAR,
    };
    let n = codes.len().min(out.len());
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = table[usize::from(c)];
    }
    n
}

/// Encodes `samples` into `out` with `codec`, as many as both hold; returns how many.
pub fn encode(codec: Codec, samples: &[i16], out: &mut [u8]) -> usize {
    let n = samples.len().min(out.len());
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = encode_sample(codec, s);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quantization step (in 16-bit units) of the µ-law segment holding `code`.
    fn ulaw_step(code: u8) -> i32 {
        8 << ((!code >> 4) & 0x07)
    }

    /// The quantization step (in 16-bit units) of the A-law segment holding `code`.
    fn alaw_step(code: u8) -> i32 {
        let segment = ((code ^ 0x55) >> 4) & 0x07;
        16 << segment.saturating_sub(1)
    }

    #[test]
    fn ulaw_known_values() {
        // Ends and zeros: code 0x00 is the most negative, 0x80 the most positive, 0x7F and
        // 0xFF the two zeros.
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        // The top segment's step is 1024, the bottom's 8.
        assert_eq!(ulaw_to_linear(0x01), -31100);
        assert_eq!(ulaw_to_linear(0x02), -30076);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0xFD), 16);
        assert_eq!(ulaw_to_linear(0x70), -120);
        assert_eq!(ulaw_to_linear(0xF0), 120);
        // The first value of segment 1: 0x80 << 1 + 16/2 - 132.
        assert_eq!(ulaw_to_linear(0xEF), 132);
        // Encoder decision values around zero and at the ends.
        assert_eq!(linear_to_ulaw(0), ULAW_SILENCE);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(3), 0xFF);
        assert_eq!(linear_to_ulaw(4), 0xFE);
        assert_eq!(linear_to_ulaw(11), 0xFE);
        assert_eq!(linear_to_ulaw(12), 0xFD);
        assert_eq!(linear_to_ulaw(-9), 0x7E);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(32124), 0x80);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(linear_to_ulaw(-1000), 0x4E);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0x00), -5504);
        assert_eq!(alaw_to_linear(0x01), -5248);
        assert_eq!(alaw_to_linear(0x02), -6016);
        assert_eq!(alaw_to_linear(0x03), -5760);
        assert_eq!(alaw_to_linear(0x80), 5504);
        assert_eq!(linear_to_alaw(0), ALAW_SILENCE);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(15), 0xD5);
        assert_eq!(linear_to_alaw(16), 0xD4);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(linear_to_alaw(-1000), 0x7A);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            let a = linear_to_alaw(alaw_to_linear(code));
            assert_eq!(a, code, "A-law {code:#04x}");
            let u = linear_to_ulaw(ulaw_to_linear(code));
            // The negative zero decodes to 0, which encodes as the positive zero.
            let want = if code == 0x7F { 0xFF } else { code };
            assert_eq!(u, want, "µ-law {code:#04x}");
        }
    }

    #[test]
    fn every_sample_encodes_within_half_a_step() {
        for x in i16::MIN..=i16::MAX {
            let u = linear_to_ulaw(x);
            let err = (i32::from(ulaw_to_linear(u)) - i32::from(x)).abs();
            // Past the top decision value the encoder clips to the largest code.
            let clipped = i32::from(x).abs() > 32124 + ulaw_step(u) / 2;
            assert!(clipped || err <= ulaw_step(u) / 2, "µ-law {x}: {err}");
            let a = linear_to_alaw(x);
            let err = (i32::from(alaw_to_linear(a)) - i32::from(x)).abs();
            assert!(err <= alaw_step(a) / 2, "A-law {x}: {err}");
        }
    }

    #[test]
    fn decoding_is_monotonic_in_the_codes_order() {
        // µ-law: 0x00..0x7F run from -32124 up to 0, 0x80..0xFF from 32124 down to 0.
        for c in 0..0x7Fu8 {
            assert!(ulaw_to_linear(c) < ulaw_to_linear(c + 1));
            assert!(ulaw_to_linear(c | 0x80) > ulaw_to_linear((c + 1) | 0x80));
        }
        // A-law sorted by value: the codes with their even bits restored are in order.
        let mut values: Vec<(u8, i16)> = (0..=255u8).map(|c| (c, alaw_to_linear(c))).collect();
        values.sort_by_key(|&(c, _)| {
            let x = c ^ 0x55;
            if x & 0x80 == 0 {
                -i32::from(x & 0x7F) - 1
            } else {
                i32::from(x & 0x7F)
            }
        });
        for w in values.windows(2) {
            assert!(w[0].1 < w[1].1, "{:?}", w);
        }
    }

    #[test]
    fn law_conversion_goes_through_linear_and_keeps_the_value_close() {
        assert_eq!(ulaw_to_alaw(ULAW_SILENCE), ALAW_SILENCE);
        assert_eq!(alaw_to_ulaw(ALAW_SILENCE), 0xFE);
        assert_eq!(ulaw_to_alaw(0x80), 0xAA);
        assert_eq!(alaw_to_ulaw(0xAA), 0x80);
        for code in 0..=255u8 {
            let a = ulaw_to_alaw(code);
            assert_eq!(a, linear_to_alaw(ulaw_to_linear(code)));
            let err = (i32::from(alaw_to_linear(a)) - i32::from(ulaw_to_linear(code))).abs();
            assert!(err <= alaw_step(a) / 2, "µ {code:#04x} -> A {a:#04x}");
            let u = alaw_to_ulaw(code);
            assert_eq!(u, linear_to_ulaw(alaw_to_linear(code)));
            let err = (i32::from(ulaw_to_linear(u)) - i32::from(alaw_to_linear(code))).abs();
            assert!(err <= ulaw_step(u) / 2, "A {code:#04x} -> µ {u:#04x}");
            // The sign is kept, but for µ-law's negative zero, which is 0.
            if code != 0x7F {
                assert_eq!(a & 0x80, code & 0x80);
            }
            assert_eq!(u & 0x80, code & 0x80);
        }
        // There and back moves a value to the same or a neighbouring code of the law it
        // started in: never further than the larger of the two codes' steps.
        for code in 0..=255u8 {
            let back = ulaw_to_alaw(alaw_to_ulaw(code));
            let moved = (i32::from(alaw_to_linear(back)) - i32::from(alaw_to_linear(code))).abs();
            let step = alaw_step(code).max(alaw_step(back));
            assert!(moved <= step, "A {code:#04x} -> {back:#04x}");
            let back = alaw_to_ulaw(ulaw_to_alaw(code));
            let moved = (i32::from(ulaw_to_linear(back)) - i32::from(ulaw_to_linear(code))).abs();
            let step = ulaw_step(code).max(ulaw_step(back));
            assert!(moved <= step, "µ {code:#04x} -> {back:#04x}");
        }
    }

    #[test]
    fn slices_by_codec() {
        let samples = [0i16, 1000, -1000, i16::MAX, i16::MIN];
        let mut codes = [0u8; 5];
        assert_eq!(encode(Codec::Pcmu, &samples, &mut codes), 5);
        assert_eq!(codes, [0xFF, 0xCE, 0x4E, 0x80, 0x00]);
        let mut back = [0i16; 8];
        assert_eq!(decode(Codec::Pcmu, &codes, &mut back), 5);
        assert_eq!(&back[..5], &[0, 988, -988, 32124, -32124]);
        assert_eq!(encode(Codec::Pcma, &samples, &mut codes[..3]), 3);
        assert_eq!(&codes[..3], &[0xD5, 0xFA, 0x7A]);
        assert_eq!(decode_sample(Codec::Pcma, 0xFA), 1008);
        assert_eq!(encode_sample(Codec::Pcma, 1008), 0xFA);
        assert_eq!(decode_sample(Codec::Pcmu, 0xCE), 988);
        assert_eq!(encode_sample(Codec::Pcmu, -988), 0x4E);
    }
}
