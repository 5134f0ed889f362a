//! A fast nesting check run before serde_yaml.
//!
//! libyaml's scanner spends time proportional to the current depth of flow collections on
//! every token, and serde_yaml reads a whole document before its recursion limit (128)
//! applies, so a spec of nothing but `[[[[...` took minutes to be refused. This pass walks the
//! parser's events and stops at the first collection nested deeper than [`MAX_NESTING`], after
//! at most a line or so of lookahead, so every spec is accepted or refused in linear time.

use unsafe_libyaml as unsafe_sys;

/// Deepest nesting of mappings and sequences accepted (serde_yaml's own limit).
pub const MAX_NESTING: usize = 128;

/// The 1-based line and column of the first collection nested deeper than [`MAX_NESTING`].
/// Syntax errors are not reported here (serde_yaml reports them with its own message).
pub fn too_deep(src: &str) -> Option<(usize, usize)> {
    // SAFETY: the parser is initialised before use and deleted once; it reads `src`, which
    // outlives it; every event it returns is deleted after its type and mark are copied out.
    unsafe {
        let mut parser = std::mem::MaybeUninit::<unsafe_sys::yaml_parser_t>::uninit();
        let p = parser.as_mut_ptr();
        if unsafe_sys::yaml_parser_initialize(p).fail {
            return None;
        }
        unsafe_sys::yaml_parser_set_encoding(p, unsafe_sys::YAML_UTF8_ENCODING);
        unsafe_sys::yaml_parser_set_input_string(p, src.as_ptr(), src.len() as u64);
        let mut depth = 0usize;
        let mut found = None;
        loop {
            let mut event = std::mem::MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
            let e = event.as_mut_ptr();
            if unsafe_sys::yaml_parser_parse(p, e).fail {
                break;
            }
            let kind = (*e).type_;
            let mark = (*e).start_mark;
            unsafe_sys::yaml_event_delete(e);
            match kind {
                unsafe_sys::YAML_SEQUENCE_START_EVENT | unsafe_sys::YAML_MAPPING_START_EVENT => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        found = Some((mark.line as usize + 1, mark.column as usize + 1));
                        break;
                    }
                }
                unsafe_sys::YAML_SEQUENCE_END_EVENT | unsafe_sys::YAML_MAPPING_END_EVENT => {
                    depth = depth.saturating_sub(1)
                }
                unsafe_sys::YAML_STREAM_END_EVENT => break,
                _ => {}
            }
        }
        unsafe_sys::yaml_parser_delete(p);
        found
    }
}

/// The error message for a document nested too deeply.
pub fn message() -> String {
    format!(
        "the YAML is nested more than {MAX_NESTING} levels deep (collections inside \
         collections); a spec needs only a few levels"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_documents_pass_and_deep_ones_are_found_quickly() {
        assert_eq!(too_deep("model: {wrn: {depth: 28, width: 10}}\n"), None);
        assert_eq!(too_deep("a: [1, 2\n"), None); // syntax errors are serde_yaml's
        let ok = format!("x: {}{}", "[".repeat(127), "]".repeat(127));
        assert_eq!(too_deep(&ok), None);
        let t = std::time::Instant::now();
        let deep = format!("x: {}{}", "[".repeat(500_000), "]".repeat(500_000));
        // The top-level mapping is level 1.
        assert_eq!(too_deep(&deep), Some((1, 4 + 127)));
        assert!(t.elapsed().as_secs_f64() < 1.0, "{:?}", t.elapsed());
        let block: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert_eq!(too_deep(&block).map(|(l, _)| l), Some(129));
    }
}
