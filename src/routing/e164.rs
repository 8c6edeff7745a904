//! E.164 normalisation of dialed numbers (ITU-T E.164, RFC 3966 for `tel:` numbers).
//!
//! Carriers and operators write the same number many ways: `+919876543210`,
//! `919876543210`, `09876543210`, `9876543210`, `+91-98765-43210`. All of them name one
//! [`Did`], which always holds `+` followed by 8 to 15 digits.

pub use crate::ids::Did;

/// Why a string is not a dialable number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum E164Error {
    #[error("the number is empty")]
    Empty,
    #[error("the number contains {0:?}, which is neither a digit nor a separator")]
    BadCharacter(char),
    #[error("the number has {0} digits; E.164 allows 8 to 15 including the country code")]
    BadLength(usize),
    #[error("the country code {0:?} must be 1 to 3 digits with no plus sign")]
    BadCountryCode(String),
}

/// A country calling code: 1 to 3 digits, no plus (e.g. "91").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CountryCode(String);

impl CountryCode {
    /// Validates a country calling code such as "91".
    pub fn parse(code: &str) -> Result<Self, E164Error> {
        let ok = (1..=3).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_digit())
            && !code.starts_with('0');
        if ok {
            Ok(Self(code.to_owned()))
        } else {
            Err(E164Error::BadCountryCode(code.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for CountryCode {
    /// India, the platform's default market.
    fn default() -> Self {
        Self("91".to_owned())
    }
}

/// The E.164 rules: the only way a [`Did`] is built from what a carrier or operator wrote.
impl Did {
    /// Normalises `raw` to E.164, reading national forms with `country`.
    ///
    /// Accepted: a leading `+` (international), `00` (international prefix), a single
    /// leading `0` (national trunk prefix), a bare national number of at most 10 digits,
    /// or a longer digit string that already starts with the country code. Visual
    /// separators `-`, `.`, space and parentheses are ignored (RFC 3966 §5.1.1).
    pub fn normalize(raw: &str, country: &CountryCode) -> Result<Did, E164Error> {
        let raw = raw.trim();
        let (international, rest) = match raw.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let mut digits = String::with_capacity(rest.len() + 4);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '-' | '.' | ' ' | '(' | ')' => {}
                other => return Err(E164Error::BadCharacter(other)),
            }
        }
        if digits.is_empty() {
            return Err(E164Error::Empty);
        }
        let cc = country.as_str();
        let full = if international {
            digits
        } else if let Some(intl) = digits.strip_prefix("00") {
            intl.to_owned()
        } else if let Some(national) = digits.strip_prefix('0') {
            format!("{cc}{national}")
        } else if digits.len() <= 10 {
            format!("{cc}{digits}")
        } else {
            digits
        };
        if !(8..=15).contains(&full.len()) || full.starts_with('0') {
            return Err(E164Error::BadLength(full.len()));
        }
        Ok(Did(format!("+{full}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn india(raw: &str) -> Result<String, E164Error> {
        Did::normalize(raw, &CountryCode::default()).map(|d| d.as_str().to_owned())
    }

    #[test]
    fn indian_forms_name_one_number() {
        for raw in [
            "+919876543210",
            "919876543210",
            "09876543210",
            "9876543210",
            "+91-98765-43210",
            "+91 (98765) 43210",
            "00919876543210",
        ] {
            assert_eq!(india(raw).as_deref(), Ok("+919876543210"), "{raw}");
        }
    }

    #[test]
    fn other_country_codes_apply_to_national_forms() {
        let us = CountryCode::parse("1").unwrap();
        assert_eq!(
            Did::normalize("(415) 555-0100", &us).unwrap().as_str(),
            "+14155550100"
        );
        assert_eq!(
            Did::normalize("+442071838750", &us).unwrap().as_str(),
            "+442071838750"
        );
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        assert_eq!(india(""), Err(E164Error::Empty));
        assert_eq!(india("+"), Err(E164Error::Empty));
        assert_eq!(india("98765x3210"), Err(E164Error::BadCharacter('x')));
        assert_eq!(india("+12345"), Err(E164Error::BadLength(5)));
        assert_eq!(india("+1234567890123456"), Err(E164Error::BadLength(16)));
        assert_eq!(india("+0123456789"), Err(E164Error::BadLength(10)));
    }

    #[test]
    fn country_codes_are_validated() {
        assert!(CountryCode::parse("91").is_ok());
        assert!(CountryCode::parse("+91").is_err());
        assert!(CountryCode::parse("").is_err());
        assert!(CountryCode::parse("1234").is_err());
        assert!(CountryCode::parse("09").is_err());
    }
}
