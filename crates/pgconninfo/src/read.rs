//! The one place that tells the two forms of a connection string apart: a URI
//! (`postgresql://` or `postgres://`, read by `uri.rs`) or key=value pairs (read by
//! `parse.rs`). Blanks around the text are ignored, as libpq does.

use crate::error::ConnInfoError;
use crate::parse;
use crate::setting::Setting;
use crate::uri;

/// A connection string as read, in the form it is written in.
pub(crate) enum Read {
    /// Key=value pairs as far as they are well-formed, each with where its value is
    /// in the text (offsets into the text given to [`read`]).
    Pairs(parse::Read),
    /// A URI's settings, or why it is malformed.
    Uri(Result<Vec<Setting>, ConnInfoError>),
}

/// Reads `text` in whichever form it is written.
pub(crate) fn read(text: &str) -> Read {
    let trimmed = text.trim();
    if uri::is_uri(trimmed) {
        return Read::Uri(uri::settings(trimmed));
    }
    let blanks_before = text.len() - text.trim_start().len();
    Read::Pairs(parse::read(trimmed).shifted(blanks_before))
}

impl Read {
    /// The settings in the order written, or why the text is malformed.
    pub fn into_settings(self) -> Result<Vec<Setting>, ConnInfoError> {
        match self {
            Read::Pairs(read) => read.into_settings(),
            Read::Uri(settings) => settings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        let settings = read(text).into_settings().unwrap();
        settings.into_iter().map(|s| s.key).collect()
    }

    /// Either form gives its settings; blanks around a URI do not make it key=value.
    #[test]
    fn reads_either_form() {
        assert_eq!(keys(" host=h port=1 "), ["host", "port"]);
        assert_eq!(
            keys("\n postgresql://u@h:1/db \t"),
            ["user", "host", "port", "dbname"]
        );
        assert!(matches!(read(" postgres://h"), Read::Uri(Ok(_))));
    }

    /// Offsets of key=value text refer to the text as given, blanks before it included.
    #[test]
    fn offsets_refer_to_the_text_given() {
        let text = "\u{3000} host=a port";
        let Read::Pairs(read) = read(text) else {
            panic!("not key=value")
        };
        assert_eq!(&text[read.settings[0].1.clone()], "a");
        assert_eq!(read.failed.map(|(_, at)| &text[at..]), Some("port"));
    }
}
