//! Reputation enforcement as SES does it: an (account, region) whose bounce or complaint rate
//! over a representative volume of recent sending crosses the review threshold is put under
//! review (`PROBATION`); one that crosses the pause threshold has its sending paused
//! (`SHUTDOWN`) until the operator lifts it. Pure: volumes in, status out.

use weir_store::model::Enforcement;

/// SES's thresholds by default: bounces 5 % review, 10 % pause; complaints 0.1 % review, 0.5 %
/// pause.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Bounce rate that puts the account under review.
    pub bounce_review: f64,
    /// Bounce rate that pauses sending.
    pub bounce_pause: f64,
    /// Complaint rate that puts the account under review.
    pub complaint_review: f64,
    /// Complaint rate that pauses sending.
    pub complaint_pause: f64,
    /// Fewer recipients than this in the window is not a representative volume: no change.
    pub min_volume: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            bounce_review: 0.05,
            bounce_pause: 0.10,
            complaint_review: 0.001,
            complaint_pause: 0.005,
            min_volume: 200,
        }
    }
}

/// The status an (account, region) should have, given its current one and its volumes.
pub fn judge(current: Enforcement, sent: i64, bounces: i64, complaints: i64, t: &Thresholds) -> Enforcement {
    if current == Enforcement::Shutdown || sent < t.min_volume.max(1) {
        return current;
    }
    let (b, c) = (bounces as f64 / sent as f64, complaints as f64 / sent as f64);
    if b >= t.bounce_pause || c >= t.complaint_pause {
        Enforcement::Shutdown
    } else if b >= t.bounce_review || c >= t.complaint_review {
        Enforcement::Probation
    } else {
        Enforcement::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Enforcement::*;

    #[test]
    fn statuses_follow_ses_thresholds_and_a_shutdown_stays_until_lifted() {
        let t = Thresholds::default();
        assert_eq!(judge(Healthy, 1000, 40, 0, &t), Healthy);
        assert_eq!(judge(Healthy, 1000, 50, 0, &t), Probation);
        assert_eq!(judge(Healthy, 1000, 100, 0, &t), Shutdown);
        assert_eq!(judge(Healthy, 1000, 0, 1, &t), Probation);
        assert_eq!(judge(Healthy, 1000, 0, 5, &t), Shutdown);
        assert_eq!(judge(Probation, 1000, 10, 0, &t), Healthy);
        assert_eq!(judge(Shutdown, 1000, 0, 0, &t), Shutdown);
        // Too little mail to judge: no change either way.
        assert_eq!(judge(Healthy, 100, 90, 0, &t), Healthy);
        assert_eq!(judge(Probation, 100, 0, 0, &t), Probation);
    }
}
