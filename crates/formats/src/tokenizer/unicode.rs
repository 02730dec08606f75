//! Code-point classes and the GPT-2 byte-to-unicode table.
//!
//! Mirrors llama.cpp's `unicode.cpp`: every code point gets one general-category
//! class (letter, number, punctuation, symbol, accent mark, separator, control or
//! undefined) plus a separate White_Space bit. The classes come from the Unicode
//! tables shipped in `regex-syntax`, built once into a flat table of
//! 0x110000 bytes so a lookup is one index.

use std::sync::OnceLock;

/// Class bits of one code point (llama.cpp's `unicode_cpt_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(u8);

const NUMBER: u8 = 1;
const LETTER: u8 = 2;
const PUNCTUATION: u8 = 4;
const ACCENT_MARK: u8 = 8;
const SYMBOL: u8 = 16;
const SEPARATOR: u8 = 32;
const CONTROL: u8 = 64;
const WHITESPACE: u8 = 128;

impl Flags {
    pub(crate) fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    pub(crate) fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE != 0
    }

    /// The single character that stands for this class in llama.cpp's
    /// "collapsed" text (0xD1 number … 0xD5 symbol, 0xD0 anything else).
    pub(crate) fn collapsed(self) -> char {
        let c = self.0 & !WHITESPACE;
        match c {
            NUMBER => '\u{D1}',
            LETTER => '\u{D2}',
            PUNCTUATION => '\u{D3}',
            ACCENT_MARK => '\u{D4}',
            SYMBOL => '\u{D5}',
            _ => '\u{D0}',
        }
    }
}

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

fn build_table() -> Vec<u8> {
    let mut t = vec![0u8; 0x110000];
    let classes: [(&str, u8); 7] = [
        ("L", LETTER),
        ("N", NUMBER),
        ("P", PUNCTUATION),
        ("M", ACCENT_MARK),
        ("S", SYMBOL),
        ("Z", SEPARATOR),
        ("C", CONTROL),
    ];
    for (name, bit) in classes {
        for (lo, hi) in class_ranges(&format!(r"\p{{{name}}}")) {
            for v in &mut t[lo as usize..=hi as usize] {
                *v = bit;
            }
        }
    }
    // Unassigned code points (Cn) are part of \p{C} in regex-syntax but are
    // "undefined" in llama.cpp; remove them again.
    for (lo, hi) in class_ranges(r"\p{Cn}") {
        for v in &mut t[lo as usize..=hi as usize] {
            *v = 0;
        }
    }
    for (i, v) in t.iter_mut().enumerate() {
        if char::from_u32(i as u32).is_some_and(char::is_whitespace) {
            *v |= WHITESPACE;
        }
    }
    t
}

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class, HirKind};
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
        return Vec::new();
    };
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect(),
        _ => Vec::new(),
    }
}

/// Class of one code point.
pub(crate) fn flags(c: char) -> Flags {
    Flags(table().get(c as usize).copied().unwrap_or(0))
}

/// GPT-2's reversible byte → printable code point map.
pub(crate) fn byte_to_char(b: u8) -> char {
    byte_tables().0[b as usize]
}

/// Inverse of [`byte_to_char`]; `None` for code points outside the map.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let i = c as usize;
    byte_tables().1.get(i).copied().flatten()
}

type ByteTables = ([char; 256], Vec<Option<u8>>);

fn byte_tables() -> &'static ByteTables {
    static T: OnceLock<ByteTables> = OnceLock::new();
    T.get_or_init(|| {
        let mut fwd = ['\0'; 256];
        let mut rev = vec![None; 512];
        let mut n = 0u32;
        for b in 0..=255u8 {
            let printable = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let c = if printable {
                b as u32
            } else {
                n += 1;
                255 + n
            };
            let c = char::from_u32(c).unwrap_or('\u{FFFD}');
            fwd[b as usize] = c;
            if let Some(slot) = rev.get_mut(c as usize) {
                *slot = Some(b);
            }
        }
        (fwd, rev)
    })
}

/// Lower-cases one code point when the mapping is a single code point.
pub(crate) fn to_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(flags('a').is_letter());
        assert!(flags('é').is_letter());
        assert!(flags('中').is_letter());
        assert!(flags('7').is_number());
        assert!(flags('٣').is_number());
        assert!(flags(' ').is_whitespace());
        assert!(flags('\u{3000}').is_whitespace());
        assert_eq!(flags('!').collapsed(), '\u{D3}');
        assert_eq!(flags('$').collapsed(), '\u{D5}');
        assert_eq!(flags('\u{301}').collapsed(), '\u{D4}');
    }

    #[test]
    fn byte_map_roundtrip() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
    }
}
