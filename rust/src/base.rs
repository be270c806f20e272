//! Base token ids (layout version 1). See docs/token-format.md.

/// Ends a string, a key, or the text of a number.
pub const STR_END: u32 = 256;
/// Ends an object's list of optional keys, and ends a map.
pub const END: u32 = 257;
/// Ends an array.
pub const ARR_END: u32 = 258;
/// Starts an array item (only where the item encoding could be ambiguous).
pub const ITEM: u32 = 259;
/// The next value is in the generic encoding because it does not conform to its schema.
pub const FALLBACK: u32 = 260;
pub const G_NULL: u32 = 261;
pub const G_FALSE: u32 = 262;
pub const G_TRUE: u32 = 263;
pub const G_NUM: u32 = 264;
pub const G_STR: u32 = 265;
pub const G_ARR: u32 = 266;
pub const G_OBJ: u32 = 267;
/// `SEL(k)` is `SEL0 + k`.
pub const SEL0: u32 = 268;

/// Version of this layout, stored in tokenizer files.
pub const LAYOUT_VERSION: u32 = 1;

/// Number of base ids for a schema that needs `sel_count` choice ids.
pub fn base_size(sel_count: u32) -> u32 {
    SEL0 + sel_count
}

pub fn name(id: u32) -> String {
    match id {
        0..=255 => format!("BYTE({id:#04x})"),
        STR_END => "STR_END".into(),
        END => "END".into(),
        ARR_END => "ARR_END".into(),
        ITEM => "ITEM".into(),
        FALLBACK => "FALLBACK".into(),
        G_NULL => "G_NULL".into(),
        G_FALSE => "G_FALSE".into(),
        G_TRUE => "G_TRUE".into(),
        G_NUM => "G_NUM".into(),
        G_STR => "G_STR".into(),
        G_ARR => "G_ARR".into(),
        G_OBJ => "G_OBJ".into(),
        _ => format!("SEL({})", id - SEL0),
    }
}

/// In an encoder's output with contents (`Encoder::with_contents`, read by
/// `Vocab::apply_with_contents`), `CONTENT_REF + k` stands for the bytes of content `k`
/// followed by `STR_END`. No base id comes near it (base ids are below 2^16).
pub const CONTENT_REF: u32 = 1 << 31;
