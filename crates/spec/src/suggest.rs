//! "Did you mean" suggestions for misspelt keys and values.

/// The candidate closest to `word` by Jaro-Winkler/Levenshtein, when close enough.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // A word that begins exactly one candidate is that candidate cut short
    // (`autoaugment` for `autoaugment_cifar10`), however far the two are in edits.
    let lower = word.to_lowercase();
    if lower.len() >= 4 {
        let mut starts = candidates
            .iter()
            .filter(|c| c.len() > lower.len() && c.to_lowercase().starts_with(&lower));
        if let (Some(c), None) = (starts.next(), starts.next()) {
            return Some(c);
        }
    }
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

/// A key path elsewhere in the schema for a key `word` that is unknown under `parent` (its
/// siblings offered nothing close): the path in `paths` whose last segment is `word` (or,
/// failing that, close to it), preferring the one sharing the longest prefix with `parent`.
/// Paths under `parent` itself are not offered (they are the siblings).
pub fn elsewhere(word: &str, parent: &str, paths: &[String]) -> Option<String> {
    let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    let under = |p: &str| match p.rsplit_once('.') {
        Some((head, _)) => head == parent,
        None => parent.is_empty(),
    };
    let others: Vec<&String> = paths.iter().filter(|p| !under(p)).collect();
    let shared = |p: &str| {
        p.split('.')
            .zip(parent.split('.'))
            .take_while(|(a, b)| a == b)
            .count()
    };
    let best = |found: Vec<&String>| {
        found
            .into_iter()
            .max_by_key(|p| (shared(p), std::cmp::Reverse(p.len())))
            .cloned()
    };
    let exact: Vec<&String> = others.iter().copied().filter(|p| last(p) == word).collect();
    if !exact.is_empty() {
        return best(exact);
    }
    let lasts: Vec<String> = others.iter().map(|p| last(p)).collect();
    let refs: Vec<&str> = lasts.iter().map(String::as_str).collect();
    let near = did_you_mean(word, &refs)?;
    best(others.into_iter().filter(|p| last(p) == near).collect())
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
    fn finds_keys_in_other_sections() {
        let paths: Vec<String> = [
            "train",
            "train.epochs",
            "train.optimizer",
            "train.optimizer.lr",
            "train.optimizer.momentum",
            "model.wrn.bn_momentum",
            "data.augment.crop.padding",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let at = |w, p| elsewhere(w, p, &paths);
        assert_eq!(at("lr", "train").as_deref(), Some("train.optimizer.lr"));
        assert_eq!(at("learning_rate", "train"), None);
        assert_eq!(
            at("padding", "data").as_deref(),
            Some("data.augment.crop.padding")
        );
        assert_eq!(at("optimiser", "").as_deref(), Some("train.optimizer"));
        assert_eq!(at("epochs", "model").as_deref(), Some("train.epochs"));
        assert_eq!(
            at("momentum", "model.wrn").as_deref(),
            Some("train.optimizer.momentum")
        );
        assert_eq!(
            at("momentum", "train").as_deref(),
            Some("train.optimizer.momentum")
        );
    }

    #[test]
    fn lists_choices() {
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(one_of(&["a"]), "`a`");
    }

    #[test]
    fn a_cut_short_word_suggests_the_one_candidate_it_begins() {
        let policies = ["autoaugment_cifar10", "randaugment", "trivialaugment"];
        assert_eq!(
            did_you_mean("autoaugment", &policies),
            Some("autoaugment_cifar10")
        );
        // Two candidates begin with it: edit distance decides, as before.
        assert_eq!(
            did_you_mean("cifar", &["cifar10", "cifar100"]),
            Some("cifar10")
        );
        // Short words are not taken as prefixes.
        assert_eq!(did_you_mean("au", &policies), None);
    }
}
