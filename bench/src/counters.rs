//! The counters the transactional workloads increment, and the lost-update check on them.
//!
//! A counter lives in the first [`COUNTER_BYTES`] bytes of a value: the run's tag, then the
//! count, both big-endian; the rest of the value is ordinary filler, so values keep
//! `--value-size` and compress as the other workloads' do. A value without the run's tag (a
//! fill's value, an earlier run's counter, or no value) counts as 0, so a run needs no setup
//! pass and the check needs no "before" pass: when it ends, the counters carrying its tag
//! must add up to exactly the commits it was told succeeded. Fewer is a lost update (two
//! commits that read the same count both acknowledged), more an increment nobody asked for.

/// Bytes of a value the counter takes: the tag and the count.
pub const COUNTER_BYTES: usize = 16;

/// Reads and writes one run's counters.
#[derive(Clone, Copy, Debug)]
pub struct CounterCodec {
    tag: u64,
}

impl CounterCodec {
    /// The codec of the run tagged `tag` (the runner's per-run seed: distinct per run).
    pub fn new(tag: u64) -> Self {
        CounterCodec { tag }
    }

    /// The count `value` holds for this run: 0 when absent or written by anything else.
    pub fn count(&self, value: Option<&[u8]>) -> u64 {
        let Some(value) = value else { return 0 };
        let (Some(tag), Some(count)) = (value.get(..8), value.get(8..COUNTER_BYTES)) else {
            return 0;
        };
        if u64::from_be_bytes(tag.try_into().unwrap_or_default()) != self.tag {
            return 0;
        }
        u64::from_be_bytes(count.try_into().unwrap_or_default())
    }

    /// A value holding `count`: the counter, then `filler` past its first [`COUNTER_BYTES`]
    /// bytes (so the value is as long as `filler`, or [`COUNTER_BYTES`] if that is longer).
    pub fn value(&self, count: u64, filler: &[u8]) -> Vec<u8> {
        let mut value = Vec::with_capacity(filler.len().max(COUNTER_BYTES));
        value.extend_from_slice(&self.tag.to_be_bytes());
        value.extend_from_slice(&count.to_be_bytes());
        value.extend_from_slice(filler.get(COUNTER_BYTES..).unwrap_or_default());
        value
    }
}

/// Compares the counters' sum with the acknowledged commits; an error says how many
/// updates were lost (or appeared from nowhere).
pub fn check_no_lost_updates(counted: u64, acknowledged: u64) -> Result<(), String> {
    match counted.cmp(&acknowledged) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(format!(
            "LOST UPDATES: {acknowledged} commits were acknowledged but the counters add up to \
             {counted}: {} acknowledged increments are missing",
            acknowledged - counted
        )),
        std::cmp::Ordering::Greater => Err(format!(
            "the counters add up to {counted} but only {acknowledged} commits were acknowledged: \
             {} increments appeared that no commit made",
            counted - acknowledged
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_its_count_and_keeps_the_filler() {
        let codec = CounterCodec::new(0xABCD);
        let filler: Vec<u8> = (0..100).collect();
        let v = codec.value(41, &filler);
        assert_eq!(v.len(), 100);
        assert_eq!(&v[COUNTER_BYTES..], &filler[COUNTER_BYTES..]);
        assert_eq!(codec.count(Some(&v)), 41);
        assert_eq!(codec.value(7, b"short").len(), COUNTER_BYTES);
        assert_eq!(codec.count(Some(&codec.value(7, b"short"))), 7);
    }

    #[test]
    fn other_values_count_as_zero() {
        let codec = CounterCodec::new(1);
        assert_eq!(codec.count(None), 0);
        assert_eq!(codec.count(Some(b"too short")), 0);
        let earlier_run = CounterCodec::new(2).value(99, &[0; 100]);
        assert_eq!(codec.count(Some(&earlier_run)), 0, "another run's counter is not ours");
        assert_eq!(codec.count(Some(&[0xFF; 100])), 0, "a fill's value");
    }

    #[test]
    fn the_check_names_lost_and_phantom_updates() {
        assert_eq!(check_no_lost_updates(10, 10), Ok(()));
        let lost = check_no_lost_updates(7, 10).unwrap_err();
        assert!(lost.contains("LOST UPDATES") && lost.contains("3 acknowledged"), "{lost}");
        let phantom = check_no_lost_updates(12, 10).unwrap_err();
        assert!(phantom.contains("2 increments appeared"), "{phantom}");
    }
}
