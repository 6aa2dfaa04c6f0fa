//! Reading decompressed VBA source: does a routine run by itself when the document opens
//! or closes, and does the code reach outside Office?
//!
//! Comments are left out, and words are judged apart from string literals: a customer
//! called "Shell" in a string, `CreateObject("Scripting.Dictionary")` or a comment about
//! the "lib folder" is ordinary business code; `Shell`, `Declare … Lib` as code and
//! `"WScript.Shell"` or `"powershell"` as strings are not.

use super::Facts;

/// Routines Office runs by themselves: when a document opens, closes or is made from a
/// template (Word's `Auto*` macros and `Document_*` events, Excel's `Auto_*` and
/// `Workbook_*`), lower-case.
const RUNS_ON_OPEN: &[&str] = &[
    "autoopen",
    "autoexec",
    "autonew",
    "autoclose",
    "autoexit",
    "auto_open",
    "auto_close",
    "auto_exec",
    "document_open",
    "document_close",
    "document_new",
    "document_contentcontrolonenter",
    "documentopen",
    "documentbeforeclose",
    "workbook_open",
    "workbook_activate",
    "workbook_close",
    "workbook_beforeclose",
    "app_documentopen",
    "app_workbookopen",
];

/// Module names whose `Main` Word runs as the matching `Auto*` macro.
const AUTO_MODULES: &[&str] = &["autoopen", "autoexec", "autonew", "autoclose", "autoexit"];

/// Event suffixes of ActiveX controls that fire while a document is shown, with no click:
/// a control on the page runs its handler as soon as the document opens.
const RUNS_WHEN_SHOWN: &[&str] = &["_layout", "_painted", "_resize", "_gotfocus"];

/// Code words (outside strings and comments, lower-case) that reach outside Office.
const CODE_WORDS: &[&str] = &[
    "shell",
    "shellexecute",
    "shellexecutea",
    "callbyname",
    "urldownloadtofile",
    "urldownloadtofilea",
    "executeexcel4macro",
    "macscript",
    "virtualalloc",
    "virtualallocex",
    "createthread",
    "createremotethread",
    "rtlmovememory",
    "writeprocessmemory",
];

/// Pieces of string literals (lower-case) that name a program, a script host or a way to
/// download: what `CreateObject`, `GetObject` or `Shell` is handed.
const STRING_PIECES: &[&str] = &[
    "wscript.shell",
    "shell.application",
    "xmlhttp",
    "winhttp",
    "adodb.stream",
    "winmgmts",
    "powershell",
    "mshta",
    "rundll32",
    "regsvr32",
    "certutil",
    "bitsadmin",
    "cmd.exe",
    "cmd /c",
    "cmd /k",
    "wscript.exe",
    "cscript",
    // Libraries a `Declare` names to download or run (`Declare … Lib "kernel32"` for
    // `Sleep` is ordinary; its memory and thread calls are code words above).
    "urlmon",
    "shell32",
    "wininet",
];

/// Reads decompressed source into `facts`.
pub(super) fn read(source: &[u8], facts: &mut Facts) {
    let text = String::from_utf8_lossy(source).to_ascii_lowercase();
    // A ` _` at a line's end continues it on the next.
    let joined = text.replace(" _\r\n", " ").replace(" _\n", " ");
    let mut code = String::new();
    let mut strings = String::new();
    let mut module_name = None;
    let mut has_main = false;
    for line in joined.lines() {
        let (line_code, line_strings) = split_line(line);
        if let Some(rest) = line_code.trim_start().strip_prefix("attribute vb_name") {
            module_name = line_strings
                .first()
                .cloned()
                .or_else(|| rest.split('"').nth(1).map(str::to_string));
            continue;
        }
        if let Some(name) = routine_name(&line_code) {
            has_main |= name == "main";
            if RUNS_ON_OPEN.contains(&name.as_str())
                || RUNS_WHEN_SHOWN.iter().any(|s| name.ends_with(s))
            {
                facts.runs_on_open = true;
            }
        }
        code.push_str(&line_code);
        code.push('\n');
        for s in line_strings {
            strings.push_str(&s);
            strings.push('\n');
        }
    }
    if has_main && module_name.is_some_and(|m| AUTO_MODULES.contains(&m.as_str())) {
        facts.runs_on_open = true;
    }
    facts.reaches_out |= CODE_WORDS.iter().any(|w| has_word(&code, w))
        || STRING_PIECES.iter().any(|p| strings.contains(p));
}

/// A line's code (strings replaced by `""`, the comment cut) and its string literals.
fn split_line(line: &str) -> (String, Vec<String>) {
    let mut code = String::new();
    let mut strings = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut literal = String::new();
                while let Some(c) = chars.next() {
                    if c == '"' {
                        // `""` inside a literal is one quote.
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            literal.push('"');
                            continue;
                        }
                        break;
                    }
                    literal.push(c);
                }
                code.push_str("\"\"");
                strings.push(literal);
            }
            '\'' => break,
            _ => code.push(c),
        }
    }
    let trimmed = code.trim_start();
    if trimmed == "rem" || trimmed.starts_with("rem ") || trimmed.starts_with("rem\t") {
        code.clear();
    }
    (code, strings)
}

/// The name a line declares as a `Sub` or `Function` (lower-case code), if it declares one.
fn routine_name(code: &str) -> Option<String> {
    let mut words = code.split_whitespace();
    let mut word = words.next()?;
    while matches!(word, "private" | "public" | "friend" | "static") {
        word = words.next()?;
    }
    if word != "sub" && word != "function" {
        return None;
    }
    let rest = words.collect::<Vec<_>>().join(" ");
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// Whether `word` occurs in `text` with no letter, digit or `_` on either side.
fn has_word(text: &str, word: &str) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = text.as_bytes();
    memchr::memmem::find_iter(bytes, word.as_bytes()).any(|at| {
        let before = at.checked_sub(1).and_then(|i| bytes.get(i)).copied();
        let after = bytes.get(at + word.len()).copied();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_of(source: &str) -> Facts {
        let mut facts = Facts::default();
        read(source.as_bytes(), &mut facts);
        facts
    }

    #[test]
    fn routines_that_run_alone_and_calls_outside_office_are_told_apart() {
        let dropper = "Attribute VB_Name = \"ThisDocument\"\r\nPrivate Sub Document_Open()\r\n  x = CreateObject(\"WScript.Shell\")\r\nEnd Sub\r\n";
        let f = facts_of(dropper);
        assert!(f.runs_on_open && f.reaches_out);
        let f = facts_of(
            "Sub Totals()\r\n  Range(\"A1\").Value = 2\r\nEnd Sub\r\n' Shelly's sheet\r\n",
        );
        assert!(!f.runs_on_open && !f.reaches_out, "{f:?}");
        assert!(facts_of("Sub InkPicture1_Painted(ByVal h As Long)\n").runs_on_open);
    }

    #[test]
    fn ordinary_business_macros_do_not_reach_out() {
        for source in [
            "Private Sub Workbook_Open()\n Set d = CreateObject(\"Scripting.Dictionary\")\nEnd Sub\n",
            "Private Sub Workbook_Open()\n Sheet1.Range(\"A1\") = \"Shell\"\nEnd Sub\n",
            "Private Sub Workbook_BeforeClose(Cancel As Boolean)\n ' copy to the lib folder\n Rem shell out later\nEnd Sub\n",
            "Private Sub UserForm_Resize()\n Set c = CreateObject(\"ADODB.Connection\")\nEnd Sub\n",
            "Private Declare PtrSafe Sub Sleep Lib \"kernel32\" (ByVal ms As Long)\nPrivate Sub Workbook_Open()\n Sleep 100\nEnd Sub\n",
        ] {
            let f = facts_of(source);
            assert!(f.runs_on_open && !f.reaches_out, "{source}: {f:?}");
        }
    }

    #[test]
    fn evasions_of_the_declaration_are_read() {
        for source in [
            "Sub\tDocument_Open()\n Shell \"calc\"\nEnd Sub\n",
            "Private Sub _\r\nDocument_Open()\r\n Shell \"calc\"\r\nEnd Sub\r\n",
            "Attribute VB_Name = \"AutoOpen\"\nSub Main()\n Shell \"calc\"\nEnd Sub\n",
            "Sub AutoClose()\n x = GetObject(\"winmgmts:\")\nEnd Sub\n",
            "Private Declare PtrSafe Function Go Lib \"urlmon\" ()\nSub AutoOpen()\nEnd Sub\n",
            "Private Declare PtrSafe Function A Lib \"kernel32\" Alias \"VirtualAlloc\" ()\nSub AutoOpen()\n VirtualAlloc 0\nEnd Sub\n",
        ] {
            let f = facts_of(source);
            assert!(f.runs_on_open && f.reaches_out, "{source}: {f:?}");
        }
    }
}
