//! Money is an integer count of minor units (cents) with an ISO 4217 currency
//! code beside it; never a float. Arithmetic is checked: an overflow is an
//! error for the caller to report, not a wrapped or saturated amount.

/// Three uppercase ASCII letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_uppercase())
}

/// `unit_price * quantity`, or None on overflow.
pub fn line_total(unit_price: i64, quantity: i64) -> Option<i64> {
    unit_price.checked_mul(quantity)
}

/// The sum of `amounts`, or None on overflow.
pub fn checked_sum(amounts: impl IntoIterator<Item = i64>) -> Option<i64> {
    amounts.into_iter().try_fold(0_i64, i64::checked_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_three_uppercase_letters() {
        assert!(is_currency_code("EUR"));
        assert!(!is_currency_code("eur"));
        assert!(!is_currency_code("EU"));
        assert!(!is_currency_code("EURO"));
        assert!(!is_currency_code("E1R"));
    }

    #[test]
    fn arithmetic_reports_overflow() {
        assert_eq!(line_total(1999, 3), Some(5997));
        assert_eq!(line_total(i64::MAX / 2 + 1, 2), None);
        assert_eq!(checked_sum([1, 2, 3]), Some(6));
        assert_eq!(checked_sum([i64::MAX, 1]), None);
    }
}
