//! "Did you mean" suggestions for misspelt keys and values.

/// The candidate closest to `word` by Jaro-Winkler/Levenshtein, when close enough.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(&str, usize)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&word.to_lowercase(), &c.to_lowercase());
        let limit = (c.len().max(word.len()) / 3).max(1) + usize::from(c.len() > 6);
        if d <= limit && best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    best.map(|(c, _)| c)
}

/// `"; did you mean `x`?"` when a candidate is close to `word`, else an empty string.
pub fn hint(word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates) {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// Formats a list of valid choices: "`a`, `b` or `c`".
pub fn one_of(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("detph", &["depth", "width"]), Some("depth"));
        assert_eq!(did_you_mean("widht", &["depth", "width"]), Some("width"));
        assert_eq!(did_you_mean("lr_rate", &["depth", "width"]), None);
        assert_eq!(
            did_you_mean("batchsize", &["batch_size", "epochs"]),
            Some("batch_size")
        );
    }

    #[test]
    fn lists_choices() {
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(one_of(&["a"]), "`a`");
    }
}
