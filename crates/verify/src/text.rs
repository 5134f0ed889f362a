//! Making text read from files safe to print on a terminal.

use std::borrow::Cow;
use std::path::Path;

/// `s` with every control character (terminal escapes, carriage returns, newlines, ...)
/// written as a Rust-style escape (`\u{1b}`, `\r`, `\n`), so that a hostile label, spec name
/// or file name cannot fake or erase output lines. Text without control characters is
/// returned as is.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path as printable text (see [`printable`]; non-UTF-8 bytes are shown as U+FFFD).
pub fn printable_path(p: &Path) -> String {
    printable(&p.to_string_lossy()).into_owned()
}

/// `message` about the file at `path`, prefixed with the (printable) path unless the message
/// already names it, so that errors read `x.onnx: ...` once, never `x.onnx: x.onnx: ...`.
/// Control characters are escaped line by line (the message's own line breaks stay).
pub fn about_file(path: &Path, message: &str) -> String {
    let shown = printable_path(path);
    let message: Vec<_> = message.split('\n').map(printable).collect();
    let message = message.join("\n");
    if message.contains(&shown) {
        message
    } else {
        format!("{shown}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_only() {
        assert_eq!(printable("cat ü 7"), "cat ü 7");
        assert_eq!(
            printable("a\u{1b}[2J\rb\nc\u{7f}"),
            "a\\u{1b}[2J\\rb\\nc\\u{7f}"
        );
        assert_eq!(printable_path(Path::new("x\ty.png")), "x\\ty.png");
        let p = Path::new("m.onnx");
        assert_eq!(
            about_file(p, "m.onnx: out of memory"),
            "m.onnx: out of memory"
        );
        assert_eq!(about_file(p, "out of memory"), "m.onnx: out of memory");
    }
}
