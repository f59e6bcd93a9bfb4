//! What a database task is doing, as the metrics, the health rules and `/status` name it.

/// What a database task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbState {
    /// Connecting and checking for pgq.
    #[default]
    Probing,
    /// Connected, but the database has no pgq (or one too old); re-checked every check_period.
    NoPgq,
    /// The server is a hot standby; ticking starts after promotion.
    Standby,
    /// Ticking.
    Ticking,
    /// Waiting before reconnecting after an error.
    BackingOff,
    /// Another instance holds this database's leader lock and ticks it; this one waits.
    Follower,
    /// Another client ticks the database and `foreign_ticker = yield`: this one waits.
    Yielding,
}

impl DbState {
    pub const ALL: [DbState; 7] = [
        DbState::Probing,
        DbState::NoPgq,
        DbState::Standby,
        DbState::Ticking,
        DbState::BackingOff,
        DbState::Follower,
        DbState::Yielding,
    ];

    /// The name used in metrics labels and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            DbState::Probing => "probing",
            DbState::NoPgq => "no_pgq",
            DbState::Standby => "standby",
            DbState::Ticking => "ticking",
            DbState::BackingOff => "backing_off",
            DbState::Follower => "follower",
            DbState::Yielding => "yielding",
        }
    }

    /// Whether this instance is expected to tick the database in this state.
    pub fn should_tick(self) -> bool {
        matches!(
            self,
            DbState::Probing | DbState::Ticking | DbState::BackingOff
        )
    }
}
