//! Stop strings over streamed text: text is released as soon as it cannot be the start of a
//! stop string, and cut right before the first stop string that appears.

use super::Flow;

/// Watches generated text for stop strings.
#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

impl StopStrings {
    /// Watches for any of `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        StopStrings {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Default::default()
        }
    }

    /// Adds generated text; returns the text that is safe to show now, and whether to go on.
    pub fn push(&mut self, piece: &str) -> (String, Flow) {
        if self.stopped {
            return (String::new(), Flow::Stop);
        }
        self.pending.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            self.stopped = true;
            self.pending.truncate(at);
            return (std::mem::take(&mut self.pending), Flow::Stop);
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let hold = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&n| s.is_char_boundary(n))
                    .map(move |n| &s[..n])
            })
            .filter(|prefix| self.pending.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let emit = self.pending.drain(..self.pending.len() - hold).collect();
        (emit, Flow::Continue)
    }

    /// Whether a stop string was seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The end of the stream: whatever was held back (nothing after a stop).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_before_the_stop_string_and_holds_back_prefixes() {
        let mut s = StopStrings::new(&["END".to_string()]);
        assert_eq!(s.push("hello E"), ("hello ".to_string(), Flow::Continue));
        assert_eq!(s.push("N"), (String::new(), Flow::Continue));
        assert_eq!(s.push("D more"), (String::new(), Flow::Stop));
        assert!(s.stopped());
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn releases_held_text_at_the_end() {
        let mut s = StopStrings::new(&["END".to_string(), String::new()]);
        assert_eq!(s.push("abc EN"), ("abc ".to_string(), Flow::Continue));
        assert_eq!(s.finish(), "EN");
    }
}
