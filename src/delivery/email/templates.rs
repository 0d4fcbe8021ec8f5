//! What an email says, in minijinja templates: an HTML and a text part per action, and a
//! digest. The defaults are built into the binary; `EMAIL_TEMPLATES_DIR` replaces any of
//! them by file name. Every template is compiled and rendered once with a sample at start,
//! so a broken override stops the worker then (naming the file), not at the first send.
//!
//! `.html` templates escape what they print (usernames and excerpts are other people's
//! words); `.txt` templates do not. Printing a variable that does not exist is an error
//! (`SemiStrict`): a typo in an override is caught by the sample render, not sent as
//! an empty line. Every attribute is always present (`none` when the notification has no
//! value), so `{% if notice.excerpt %}` is the way to test one.

use crate::delivery::job::Notice;
use crate::delivery::wording;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Template for a notification whose action the wording table does not know.
const FALLBACK: &str = "notification";
const DIGEST: &str = "digest";

/// The built-in templates, by the file name that overrides each.
const BUILT_IN: &[(&str, &str)] = &[
    ("layout.html", include_str!("../email_templates/layout.html")),
    ("layout.txt", include_str!("../email_templates/layout.txt")),
    (
        "post.like.html",
        include_str!("../email_templates/post.like.html"),
    ),
    ("post.like.txt", include_str!("../email_templates/post.like.txt")),
    (
        "comment.like.html",
        include_str!("../email_templates/comment.like.html"),
    ),
    (
        "comment.like.txt",
        include_str!("../email_templates/comment.like.txt"),
    ),
    (
        "reply.post.html",
        include_str!("../email_templates/reply.post.html"),
    ),
    (
        "reply.post.txt",
        include_str!("../email_templates/reply.post.txt"),
    ),
    (
        "reply.comment.html",
        include_str!("../email_templates/reply.comment.html"),
    ),
    (
        "reply.comment.txt",
        include_str!("../email_templates/reply.comment.txt"),
    ),
    ("mention.html", include_str!("../email_templates/mention.html")),
    ("mention.txt", include_str!("../email_templates/mention.txt")),
    (
        "user.follow.html",
        include_str!("../email_templates/user.follow.html"),
    ),
    (
        "user.follow.txt",
        include_str!("../email_templates/user.follow.txt"),
    ),
    (
        "notification.html",
        include_str!("../email_templates/notification.html"),
    ),
    (
        "notification.txt",
        include_str!("../email_templates/notification.txt"),
    ),
    ("digest.html", include_str!("../email_templates/digest.html")),
    ("digest.txt", include_str!("../email_templates/digest.txt")),
];

/// A template override that cannot be used, and which file it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub file: String,
    pub problem: String,
}

/// The templates in use: the built-in ones, with any overrides.
#[derive(Clone)]
pub struct EmailTemplates {
    env: Arc<Environment<'static>>,
    /// The file names replaced from `EMAIL_TEMPLATES_DIR`, for logs.
    overridden: Vec<String>,
}

impl std::fmt::Debug for EmailTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailTemplates")
            .field("overridden", &self.overridden)
            .finish()
    }
}

/// One notification as a template sees it: its stored attributes (all of them, `none` when
/// absent), and the words of [`wording`].
#[derive(Debug, Clone, Serialize)]
pub struct NoticeView {
    pub id: String,
    pub owner: String,
    pub action_key: String,
    pub userid: String,
    pub username: Option<String>,
    pub userpic: Option<String>,
    pub userbio: Option<String>,
    pub action: i64,
    pub resource_type: String,
    pub resource_id: String,
    pub excerpt: Option<String>,
    pub read_status: bool,
    pub created_at: String,
    pub version: String,
    /// "John Doe replied to your post".
    pub headline: String,
    /// "John Doe".
    pub actor: String,
    /// "replied to your post".
    pub deed: String,
    /// `reply.post`; `none` for an action the table does not know.
    pub event_type: Option<String>,
}

impl NoticeView {
    pub fn of(notice: &Notice) -> NoticeView {
        let item = &notice.item;
        NoticeView {
            id: item.id.clone(),
            owner: item.owner.clone(),
            action_key: item.action_key.clone(),
            userid: item.userid.clone(),
            username: item.username.clone(),
            userpic: item.userpic.clone(),
            userbio: item.userbio.clone(),
            action: item.action,
            resource_type: item.resource_type.clone(),
            resource_id: item.resource_id.clone(),
            excerpt: item.excerpt.clone(),
            read_status: item.read_status,
            created_at: item.created_at.clone(),
            version: notice.version.clone(),
            headline: wording::headline(notice),
            actor: wording::actor(item).to_owned(),
            deed: wording::deed(item).to_owned(),
            event_type: wording::event_type(notice).map(|name| name.as_str().to_owned()),
        }
    }
}

/// Everything a template can print.
#[derive(Debug, Clone, Serialize)]
pub struct EmailContext {
    pub owner: String,
    /// The recipient's locale, `en` when they gave none.
    pub locale: String,
    /// The email's subject.
    pub subject: String,
    /// The owner's unsubscribe link (`EMAIL_UNSUBSCRIBE_URL`), or `none`.
    pub unsubscribe_url: Option<String>,
    /// The notification of an instant email; `none` in a digest.
    pub notice: Option<NoticeView>,
    /// The notifications of the email: the digest's, oldest first, or the one.
    pub notices: Vec<NoticeView>,
}

/// An email's two parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub html: String,
}

impl EmailTemplates {
    /// The templates built into the binary.
    pub fn built_in() -> EmailTemplates {
        EmailTemplates::with_overrides(Vec::new()).expect("the built-in email templates are valid")
    }

    /// The built-in templates, each replaced by the file of the same name in `dir`, if any.
    /// Files not named `.html` or `.txt` (and hidden files) are ignored; an `.html` or `.txt`
    /// file with a name no template has is refused, as a misspelt override would otherwise
    /// be silently unused.
    pub fn load(dir: &Path) -> Result<EmailTemplates, TemplateError> {
        let folder_error = |problem: String| TemplateError {
            file: dir.display().to_string(),
            problem,
        };
        let entries =
            std::fs::read_dir(dir).map_err(|error| folder_error(format!("cannot be read: {error}")))?;
        let mut overrides = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| folder_error(format!("cannot be read: {error}")))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_template = name.ends_with(".html") || name.ends_with(".txt");
            if name.starts_with('.') || !is_template || !path.is_file() {
                continue;
            }
            let file = path.display().to_string();
            if !BUILT_IN.iter().any(|(known, _)| *known == name) {
                return Err(TemplateError {
                    file,
                    problem: format!(
                        "is not the name of a template (one of: {})",
                        BUILT_IN
                            .iter()
                            .map(|(known, _)| *known)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            let source = std::fs::read_to_string(&path).map_err(|error| TemplateError {
                file: file.clone(),
                problem: format!("cannot be read: {error}"),
            })?;
            overrides.push((name, file, source));
        }
        overrides.sort();
        EmailTemplates::with_overrides(overrides)
    }

    /// `overrides`: (template name, file shown in errors, source).
    fn with_overrides(overrides: Vec<(String, String, String)>) -> Result<EmailTemplates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        for (name, source) in BUILT_IN {
            env.add_template(name, source).map_err(|error| TemplateError {
                file: format!("built-in {name}"),
                problem: error.to_string(),
            })?;
        }
        let mut files = std::collections::HashMap::new();
        for (name, file, source) in &overrides {
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|error| TemplateError {
                    file: file.clone(),
                    problem: describe(&error),
                })?;
            files.insert(name.clone(), file.clone());
        }
        let templates = EmailTemplates {
            env: Arc::new(env),
            overridden: overrides.into_iter().map(|(name, _, _)| name).collect(),
        };
        templates.check(&files)?;
        Ok(templates)
    }

    /// Renders every email the templates can make once, with sample notifications, so that
    /// an error shows at start. Names the file where the error is (a layout, say).
    fn check(&self, files: &std::collections::HashMap<String, String>) -> Result<(), TemplateError> {
        let file_of = |name: &str| {
            files
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("built-in {name}"))
        };
        let samples: Vec<Notice> = (1..=7).map(sample_notice).collect();
        let mut contexts: Vec<(String, EmailContext)> = samples
            .iter()
            .map(|notice| {
                (
                    template_for(notice),
                    sample_context(Some(notice), samples.clone()),
                )
            })
            .collect();
        contexts.push((DIGEST.to_owned(), sample_context(None, samples.clone())));
        for (base, context) in contexts {
            for extension in ["html", "txt"] {
                let name = format!("{base}.{extension}");
                self.render_file(&name, &context).map_err(|error| TemplateError {
                    file: file_of(error.name().unwrap_or(&name)),
                    problem: describe(&error),
                })?;
            }
        }
        Ok(())
    }

    /// The file names replaced from `EMAIL_TEMPLATES_DIR`.
    pub fn overridden(&self) -> &[String] {
        &self.overridden
    }

    /// Both parts of the email for `context`: its notice's action template, or the digest's
    /// when it has no single notice.
    pub fn render(&self, context: &EmailContext) -> Result<Rendered, String> {
        let base = match &context.notice {
            Some(_) => template_for_view(context.notices.first()),
            None => DIGEST.to_owned(),
        };
        let part = |extension: &str| {
            let name = format!("{base}.{extension}");
            self.render_file(&name, context)
                .map_err(|error| format!("template {}: {}", error.name().unwrap_or(&name), describe(&error)))
        };
        Ok(Rendered {
            text: part("txt")?,
            html: part("html")?,
        })
    }

    fn render_file(&self, name: &str, context: &EmailContext) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(Value::from(minijinja::value::Serde(context)))
    }
}

/// The template (without extension) an instant email about `notice` uses.
fn template_for(notice: &Notice) -> String {
    wording::event_type(notice)
        .map(|name| name.as_str().to_owned())
        .unwrap_or_else(|| FALLBACK.to_owned())
}

fn template_for_view(notice: Option<&NoticeView>) -> String {
    notice
        .and_then(|notice| notice.event_type.clone())
        .unwrap_or_else(|| FALLBACK.to_owned())
}

/// A minijinja error with its causes and line, in one line.
fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A notification of each action (1 to 6, and 7, which no table knows), every attribute set.
fn sample_notice(action: i64) -> Notice {
    Notice {
        item: crate::domain::FeedItem {
            owner: "user-123".into(),
            action_key: format!("sample#{action}"),
            id: format!("00000000-0000-4000-8000-00000000000{action}"),
            userid: "user-456".into(),
            username: Some("John Doe".into()),
            userpic: Some("https://example.com/john.png".into()),
            userbio: Some("Writes things".into()),
            action,
            resource_type: "post".into(),
            resource_id: "post-789".into(),
            excerpt: Some("Great post!".into()),
            read_status: false,
            created_at: "2024-01-15T10:30:00Z".into(),
            actor_count: None,
            actors: None,
        },
        version: "1".into(),
        published: None,
        created_job: None,
    }
}

fn sample_context(notice: Option<&Notice>, notices: Vec<Notice>) -> EmailContext {
    let notices: Vec<Notice> = match notice {
        Some(notice) => vec![notice.clone()],
        None => notices,
    };
    EmailContext {
        owner: "user-123".into(),
        locale: "en".into(),
        subject: match notice {
            Some(notice) => wording::headline(notice),
            None => wording::digest_headline(notices.len()),
        },
        unsubscribe_url: Some("https://example.com/unsubscribe?owner=user-123".into()),
        notice: notice.map(NoticeView::of),
        notices: notices.iter().map(NoticeView::of).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_for(notice: &Notice) -> EmailContext {
        EmailContext {
            owner: notice.item.owner.clone(),
            locale: "en".into(),
            subject: wording::headline(notice),
            unsubscribe_url: None,
            notice: Some(NoticeView::of(notice)),
            notices: vec![NoticeView::of(notice)],
        }
    }

    #[test]
    fn every_action_has_both_parts_with_its_headline() {
        let templates = EmailTemplates::built_in();
        for action in 1..=7 {
            let notice = sample_notice(action);
            let rendered = templates.render(&context_for(&notice)).unwrap();
            let headline = wording::headline(&notice);
            assert!(rendered.text.contains(&headline), "{action}: {}", rendered.text);
            assert!(rendered.html.contains(&headline), "{action}: {}", rendered.html);
            assert!(!rendered.text.contains("Unsubscribe"), "no link configured");
        }
    }

    #[test]
    fn html_escapes_what_people_wrote_and_text_keeps_it() {
        let mut notice = sample_notice(3);
        notice.item.username = Some("<b>Eve</b>".into());
        notice.item.excerpt = Some("<script>alert(1)</script>".into());
        let rendered = EmailTemplates::built_in().render(&context_for(&notice)).unwrap();
        assert!(rendered.html.contains("&lt;script&gt;"), "{}", rendered.html);
        assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
        assert!(!rendered.html.contains("<b>Eve"), "{}", rendered.html);
        assert!(
            rendered.text.contains("<script>alert(1)</script>"),
            "{}",
            rendered.text
        );
    }

    #[test]
    fn an_absent_excerpt_prints_nothing() {
        let mut notice = sample_notice(3);
        notice.item.excerpt = None;
        let rendered = EmailTemplates::built_in().render(&context_for(&notice)).unwrap();
        assert!(!rendered.text.contains("none"), "{}", rendered.text);
        assert!(!rendered.html.contains("blockquote"), "{}", rendered.html);
    }

    #[test]
    fn overrides_replace_by_name_and_broken_ones_name_their_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reply.post.txt"), "Custom: {{ notice.headline }}").unwrap();
        std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
        let templates = EmailTemplates::load(dir.path()).unwrap();
        assert_eq!(templates.overridden(), ["reply.post.txt"]);
        let rendered = templates.render(&context_for(&sample_notice(3))).unwrap();
        assert_eq!(rendered.text, "Custom: John Doe replied to your post");

        let cases = [
            ("digest.html", "{% for n in notices %}", "digest.html"),
            ("mention.txt", "{{ notice.headlin }}", "mention.txt"),
            ("layout.html", "{{ nothing_here }}", "layout.html"),
            ("reply_post.txt", "x", "reply_post.txt"),
        ];
        for (name, source, file) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(name), source).unwrap();
            let error = EmailTemplates::load(dir.path()).unwrap_err();
            assert!(error.file.ends_with(file), "{name}: {error:?}");
        }
        let missing = EmailTemplates::load(Path::new("/nonexistent/templates")).unwrap_err();
        assert!(missing.problem.contains("cannot be read"), "{missing:?}");
    }
}
