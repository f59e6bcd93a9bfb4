//! "Did you mean ...?": the known name closest to a misspelled one.

/// The key of [`super::keys::KEYS`] closest to `name`, if it is close enough to be a
/// typo of it (at most a third of its characters differ, and no more than 3).
pub fn closest_key(name: &str) -> Option<&'static str> {
    let name = name.to_lowercase();
    let limit = (name.chars().count() / 3).clamp(1, 3);
    super::keys::KEYS
        .iter()
        .map(|key| (edit_distance(&name, key.name), key.name))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, key)| key)
}

/// Levenshtein distance: the fewest one-character edits that turn `a` into `b`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance counts insertions, deletions and substitutions.
    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("PGQD_TICKER_PERIO", "PGQD_TICKER_PERIOD"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    /// A typo or a wrong case finds its key; a word that is no key's typo finds none.
    #[test]
    fn closest_keys() {
        assert_eq!(closest_key("tikcer_period"), Some("ticker_period"));
        assert_eq!(closest_key("Ticker_Period"), Some("ticker_period"));
        assert_eq!(closest_key("base_constr"), Some("base_connstr"));
        assert_eq!(closest_key("foo"), None);
        assert_eq!(closest_key("completely_different"), None);
    }
}
