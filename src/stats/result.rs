//! The results calls are counted by: the `result` label of the ticker and maintenance
//! families and the keys of `/status`'s `ticker_calls`.

/// How a ticker call ended. Declared in the order of the strings, so that the maps
/// keyed by it list them as they always did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TickerResult {
    /// The call failed.
    Error,
    /// `pgq.ticker()` failed for all queues at once; queues were ticked one by one.
    Fallback,
    Ok,
    /// The call overran ticker_timeout.
    Timeout,
}

impl TickerResult {
    /// Each exists (at 0) from a task's start, so a dashboard never shows "No data"
    /// for a healthy database.
    pub const ALL: [TickerResult; 4] = [
        TickerResult::Ok,
        TickerResult::Fallback,
        TickerResult::Error,
        TickerResult::Timeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TickerResult::Error => "error",
            TickerResult::Fallback => "fallback",
            TickerResult::Ok => "ok",
            TickerResult::Timeout => "timeout",
        }
    }
}

/// Ticker calls by how they ended: counted in place, every result present from the
/// start, listed in the order of the strings (as a map keyed by [`TickerResult`]
/// would). An array, not a map: a call's count is one of the per-call writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickerCalls([u64; 4]);

impl TickerCalls {
    /// In the order of the strings (the enum's declaration order).
    const ORDER: [TickerResult; 4] = [
        TickerResult::Error,
        TickerResult::Fallback,
        TickerResult::Ok,
        TickerResult::Timeout,
    ];

    pub fn add(&mut self, result: TickerResult) {
        self.0[result as usize] += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = (TickerResult, &u64)> {
        Self::ORDER.into_iter().zip(&self.0)
    }

    pub fn values(&self) -> impl Iterator<Item = &u64> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::ops::Index<&TickerResult> for TickerCalls {
    type Output = u64;

    fn index(&self, result: &TickerResult) -> &u64 {
        &self.0[*result as usize]
    }
}

/// How a maintenance operation ended (declared in the order of the strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MaintResult {
    Error,
    Ok,
}

impl MaintResult {
    /// Each exists (at 0) from a task's start.
    pub const ALL: [MaintResult; 2] = [MaintResult::Ok, MaintResult::Error];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MaintResult::Error => "error",
            MaintResult::Ok => "ok",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The declaration order is the order of the strings, so metrics list the labels
    /// in the order they always had.
    #[test]
    fn results_sort_as_their_names() {
        let mut ticker = TickerResult::ALL;
        ticker.sort();
        assert!(ticker.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
        let mut maint = MaintResult::ALL;
        maint.sort();
        assert!(maint.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
    }
}
