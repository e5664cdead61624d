//! Event-time windows: which windows a row belongs to, and when a window closes.
//!
//! As in ksqlDB (Kafka Streams): tumbling and hopping windows are aligned to the epoch,
//! `[start, start + size)`; a session window is `[first event, last event]` of a key's rows no
//! more than `gap` apart. A window *closes* when the stream time of the partition (the largest
//! event time seen) reaches its end plus the grace period; rows for a closed window are late,
//! dropped and counted.

use crate::parser::{WindowKind, WindowSpec};

/// ksqlDB's default grace period when none is given: 24 hours.
pub(crate) const DEFAULT_GRACE_MS: i64 = 24 * 3_600_000;
/// Default `RETENTION` (Kafka Streams' default window store retention): 24 hours, or size +
/// grace when longer.
pub(crate) const MIN_RETENTION_MS: i64 = 24 * 3_600_000;

/// A window's bounds, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Bounds {
    pub start: i64,
    pub end: i64,
}

/// A `WINDOW` clause with its defaults filled in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windowing {
    pub kind: WindowKind,
    pub grace: i64,
    /// How long a window's row stays in the table for pull queries, in stream time from the
    /// window's start (a session's: from its last event), as ksqlDB: the row goes once the
    /// partition's stream time reaches start + retention. At least size + grace (gap + grace
    /// for sessions), so a row stays until its window closed.
    pub retention: i64,
}

impl Windowing {
    pub(crate) fn new(spec: &WindowSpec) -> Windowing {
        let grace = spec.grace_ms.unwrap_or(DEFAULT_GRACE_MS);
        let size = match spec.kind {
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => size,
            WindowKind::Session { gap } => gap,
        };
        Windowing {
            kind: spec.kind,
            grace,
            retention: spec
                .retention_ms
                .unwrap_or(MIN_RETENTION_MS)
                .max(size + grace),
        }
    }

    /// The tumbling or hopping windows containing `t`, oldest first, into `out`.
    pub(crate) fn assign(&self, t: i64, out: &mut Vec<Bounds>) {
        out.clear();
        match self.kind {
            WindowKind::Tumbling { size } => {
                let start = t.div_euclid(size) * size;
                out.push(Bounds {
                    start,
                    end: start + size,
                });
            }
            WindowKind::Hopping { size, advance } => {
                // Starts are multiples of `advance` in (t - size, t].
                let last = t.div_euclid(advance) * advance;
                let mut start = last;
                while start > t - size {
                    start -= advance;
                }
                start += advance;
                while start <= last {
                    out.push(Bounds {
                        start,
                        end: start + size,
                    });
                    start += advance;
                }
            }
            WindowKind::Session { .. } => out.push(Bounds { start: t, end: t }),
        }
    }

    /// The stream time at which a window with these bounds closes.
    pub(crate) fn close_time(&self, b: Bounds) -> i64 {
        match self.kind {
            // Kafka Streams: a session may still grow until `end + gap`, then the grace runs.
            WindowKind::Session { gap } => b.end.saturating_add(gap).saturating_add(self.grace),
            _ => b.end.saturating_add(self.grace),
        }
    }

    /// Whether a window with these bounds is closed at stream time `stream_time`.
    pub(crate) fn is_closed(&self, b: Bounds, stream_time: i64) -> bool {
        match self.kind {
            WindowKind::Session { .. } => self.close_time(b) < stream_time,
            _ => self.close_time(b) <= stream_time,
        }
    }

    /// The session gap, for session windows.
    pub(crate) fn gap(&self) -> Option<i64> {
        match self.kind {
            WindowKind::Session { gap } => Some(gap),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(kind: WindowKind) -> Windowing {
        Windowing::new(&WindowSpec {
            kind,
            grace_ms: Some(0),
            retention_ms: None,
        })
    }

    #[test]
    fn tumbling_and_hopping_assignment() {
        let mut out = vec![];
        w(WindowKind::Tumbling { size: 10 }).assign(25, &mut out);
        assert_eq!(out, vec![Bounds { start: 20, end: 30 }]);
        w(WindowKind::Tumbling { size: 10 }).assign(-1, &mut out);
        assert_eq!(out, vec![Bounds { start: -10, end: 0 }]);
        w(WindowKind::Hopping {
            size: 10,
            advance: 5,
        })
        .assign(12, &mut out);
        assert_eq!(
            out,
            vec![Bounds { start: 5, end: 15 }, Bounds { start: 10, end: 20 }]
        );
        w(WindowKind::Hopping {
            size: 10,
            advance: 5,
        })
        .assign(10, &mut out);
        assert_eq!(
            out,
            vec![Bounds { start: 5, end: 15 }, Bounds { start: 10, end: 20 }]
        );
    }

    #[test]
    fn closing() {
        let t = w(WindowKind::Tumbling { size: 10 });
        assert!(!t.is_closed(Bounds { start: 0, end: 10 }, 9));
        assert!(t.is_closed(Bounds { start: 0, end: 10 }, 10));
        let s = w(WindowKind::Session { gap: 5 });
        assert!(!s.is_closed(Bounds { start: 0, end: 3 }, 8));
        assert!(s.is_closed(Bounds { start: 0, end: 3 }, 9));
    }
}
