//! The variables a Dockerfile word is expanded with: ARGs and ENV in
//! scope, in the order they were first set (RUN sees them in that order).

use crate::dockerfile::shell::Lexer;

/// Names and values in the order each name was first set; setting a name
/// again changes its value in place (a re-declared ARG keeps its place).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<(String, String)>);

impl Scope {
    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((name.to_string(), value.to_string())),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    /// Every name and value, first set first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every (name, value), first set first.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// This scope with `over`'s values set on top.
    pub fn overlaid(&self, over: &Scope) -> Scope {
        let mut out = self.clone();
        for (k, v) in over.iter() {
            out.set(k, v);
        }
        out
    }

    /// `word` expanded with these variables (shell-style, `escape` the
    /// Dockerfile's escape character).
    pub fn expand(&self, word: &str, escape: char) -> Result<String, String> {
        Lexer::new(escape)
            .process_word(word, &|k: &str| self.get(k))
            .map(|e| e.value)
            .map_err(|e| e.to_string())
    }
}

impl FromIterator<(String, String)> for Scope {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut scope = Scope::default();
        for (k, v) in iter {
            scope.set(&k, &v);
        }
        scope
    }
}

#[cfg(test)]
mod tests {
    use super::Scope;

    #[test]
    fn a_name_set_again_keeps_its_place_and_takes_the_new_value() {
        let mut s = Scope::default();
        s.set("A", "1");
        s.set("B", "2");
        s.set("A", "3");
        assert_eq!(s.iter().collect::<Vec<_>>(), [("A", "3"), ("B", "2")]);
        assert_eq!(s.expand("${A}-$B-${C:-x}", '\\').unwrap(), "3-2-x");
        let over: Scope = [("B".to_string(), "9".to_string())].into_iter().collect();
        assert_eq!(s.overlaid(&over).get("B"), Some("9"));
        s.remove("A");
        assert_eq!(s.get("A"), None);
    }
}
