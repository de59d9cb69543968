//! UTC calendar formatting from unix milliseconds.
//!
//! Hand-written (days-from-civil, H. Hinnant) so that the crate needs no date
//! library when compiled to wasm32-wasip2; the shop only ever formats the
//! current time, it never parses dates.

/// Calendar fields of one instant in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UtcDateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl UtcDateTime {
    fn from_unix_ms(unix_ms: u64) -> Self {
        let seconds = unix_ms / 1000;
        let days = (seconds / 86_400) as i64;
        let second_of_day = (seconds % 86_400) as u32;
        // Shift the epoch to 0000-03-01 so that leap days fall at the end of
        // the (400-year) era and of each year.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        UtcDateTime {
            year,
            month,
            day,
            hour: second_of_day / 3600,
            minute: second_of_day / 60 % 60,
            second: second_of_day % 60,
        }
    }
}

/// RFC 3339 timestamp in UTC with second precision, e.g. `2024-02-29T23:59:59Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let t = UtcDateTime::from_unix_ms(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `YYYYMMDDHHMMSS` in UTC, as used inside order numbers.
pub fn compact_utc(unix_ms: u64) -> String {
    let t = UtcDateTime::from_unix_ms(unix_ms);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_and_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 is a leap day in a year divisible by 400.
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        // 2100 is not a leap year: the day after 02-28 is 03-01.
        assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(compact_utc(1_704_164_645_000), "20240102030405");
    }

    fn days_in_month(year: i64, month: u32) -> u32 {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_previous_one() {
        let mut previous = UtcDateTime::from_unix_ms(0);
        for day in 1..(146_097 * 2) {
            let current = UtcDateTime::from_unix_ms(day * 86_400_000);
            let expected = if previous.day < days_in_month(previous.year, previous.month) {
                (previous.year, previous.month, previous.day + 1)
            } else if previous.month < 12 {
                (previous.year, previous.month + 1, 1)
            } else {
                (previous.year + 1, 1, 1)
            };
            assert_eq!((current.year, current.month, current.day), expected, "after {previous:?}");
            previous = current;
        }
    }
}
