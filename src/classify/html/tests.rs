use super::*;

/// Regression (review): `<a href=x=">` opened a quoted value at the quote, which HTML5
/// reads as part of the unquoted value, and the pitch after the tag was hidden.
#[test]
fn a_quote_inside_an_unquoted_value_hides_no_text() {
    let r = render(r#"<a href=x=">Buy cheap viagra now</a> and <img src="logo.gif">"#);
    assert!(r.text.contains("viagra"), "{:?}", r.text);
}

/// Regression (review): a `<!--` inside a title (or a textarea, xmp, iframe, noembed,
/// noframes) is text to a browser, which closes the element and shows what follows;
/// it was taken for a comment and hid the rest.
#[test]
fn a_comment_opener_inside_a_text_only_element_hides_nothing() {
    let r = render("<title><!-- </title>Cheap viagra --><p>now</p>");
    assert!(r.text.contains("Cheap viagra"), "{:?}", r.text);
    let r = render("<textarea>a <b>x</b></textarea> <b>shown</b>");
    assert!(r.text.contains("shown"), "{:?}", r.text);
    // Never closed: read as before, markup as markup.
    let r = render("<title>Hi<p>there");
    assert!(!r.text.contains('<'), "{:?}", r.text);
    // Review of the change: an iframe's `src` is still a link.
    let r = render("<p>hi</p><iframe src=\"http://spam.example/x\"></iframe>");
    assert_eq!(r.links, ["http://spam.example/x"]);
}

/// Regression: each element of a page whose content is text and that is never closed
/// searched the rest of the page for its closing tag (a megabyte of `<xmp>` took minutes).
/// Such elements read as markup.
#[test]
fn many_text_elements_never_closed_render_as_markup() {
    for element in crate::mail::html::TEXT_ONLY_ELEMENTS {
        let html = format!("{}<p>shown", format!("<{element}>x").repeat(20_000));
        let r = render(&html);
        assert!(r.text.ends_with("shown"), "{element}");
        assert!(!r.text.contains('<'), "{element}");
        assert_eq!(r.text.matches('x').count(), 20_000, "{element}");
    }
}

#[test]
fn inline_tags_and_comments_do_not_split_words() {
    let r = render("<p>Buy vi<b></b>ag<!-- hash -->ra now</p>");
    assert!(r.text.contains("viagra"), "{:?}", r.text);
}

/// Regression (review): `<!-->` (an empty comment in HTML5, after which the text
/// shows) was read as a comment never closed, so the classifier saw nothing of the rest
/// of the part: a sender hid its pitch from the tokens behind it.
#[test]
fn an_empty_comment_hides_nothing_after_it() {
    for html in [
        "<!-->Buy cheap pills",
        "<!--->Buy cheap pills",
        "<!-- x --!>Buy cheap pills",
    ] {
        let r = render(html);
        assert!(r.text.contains("Buy cheap pills"), "{html:?}: {:?}", r.text);
    }
}

/// Regression (review): only a short table of lower-case names was known, and names
/// past 10 characters were not looked up: `vi&ZeroWidthSpace;agra` and `v&Iacute;agra`
/// were never `viagra`.
#[test]
fn every_named_reference_is_decoded() {
    assert_eq!(
        render("vi&ZeroWidthSpace;agra vi&NegativeMediumSpace;agra")
            .text
            .trim(),
        "vi\u{200B}agra vi\u{200B}agra"
    );
    assert_eq!(render("v&Iacute;agra").text.trim(), "v\u{CD}agra");
    assert_eq!(render("&NoSuchName; &amp").text.trim(), "&NoSuchName; &");
}

/// Regression (review): a legacy reference without its `;` (`v&shyiagra`, which a
/// browser shows as `viagra`) was left as written, so the word was never tokenized.
#[test]
fn legacy_references_read_without_their_semicolon() {
    assert_eq!(render("buy v&shyiagra").text.trim(), "buy v\u{AD}iagra");
    assert_eq!(
        render("&notit; &ampx &copy2002").text.trim(),
        "\u{AC}it; &x \u{A9}2002"
    );
    // In a link, a parameter that starts like a name stays a parameter.
    let r = render(r#"<a href="http://x.test/?a=1&copy=2&not&reg;">x</a>"#);
    assert_eq!(
        r.links,
        vec!["http://x.test/?a=1&copy=2\u{AC}\u{AE}".to_string()]
    );
}

#[test]
fn block_tags_separate_words_and_entities_decode() {
    let r = render("<td>one</td><td>two&nbsp;&amp;&#51;</td>");
    let words: Vec<&str> = r.text.split_whitespace().collect();
    assert_eq!(words, vec!["one", "two", "&3"]);
}

/// Regression (review): a numeric reference without its `;` (`&#118iagra`, which
/// browsers show as `viagra`) or with leading zeros past a 10-character window was
/// left as written, so the word was never tokenized.
#[test]
fn numeric_references_read_as_browsers_read_them() {
    for html in [
        "buy &#118iagra now",
        "buy &#0000000118;iagra now",
        "buy &#x76iagra now",
        "buy &#X000076;iagra now",
    ] {
        assert_eq!(render(html).text.trim(), "buy viagra now", "{html}");
    }
    assert_eq!(
        render("a &#0; b &#99999999999; c").text.trim(),
        "a \u{FFFD} b \u{FFFD} c"
    );
    assert_eq!(render("&# and &#x;").text.trim(), "&# and &#x;");
}

#[test]
fn collects_links_and_hides_scripts() {
    let html = r##"<a href="http://example.com/x?a=1&amp;b=2">x</a><img src="http://i.test/a.gif">
        <font color="#FFFFFF">hidden words</font><script>var a = "<b>";</script><form action="http://f.test/p">"##;
    let r = render(html);
    assert_eq!(
        r.links,
        vec![
            "http://example.com/x?a=1&b=2".to_string(),
            "http://f.test/p".to_string()
        ]
    );
    assert!(!r.text.contains("var a"), "script text is not visible");
}

/// Text a reader does not see is kept apart: hidden by style, white on the default white
/// page, or the colour of its cell. White on a dark cell, and text after a hiding
/// element closes, are seen; a cell left open does not lend its background to the next.
#[test]
fn hidden_text_is_kept_apart() {
    let r = render(
        "<p>Buy now</p><div style=\"display:none\">meeting agenda <b>minutes</b></div>\
         <font color=\"#FFFFFF\">quarterly report</font> shown\
         <span style=\"font-size:0px\">regards</span>",
    );
    let seen: Vec<&str> = r.text.split_whitespace().collect();
    let hidden: Vec<&str> = r.hidden.split_whitespace().collect();
    assert_eq!(seen, ["Buy", "now", "shown"]);
    assert_eq!(
        hidden,
        [
            "meeting",
            "agenda",
            "minutes",
            "quarterly",
            "report",
            "regards"
        ]
    );
    let r = render(
        "<table><tr><td bgcolor=\"#000000\"><font color=white>Sale</font>\
         <td><font color=black>Price</font><td bgcolor=navy><font color=\"#000080\">x</font></table>",
    );
    assert_eq!(
        r.text.split_whitespace().collect::<Vec<_>>(),
        ["Sale", "Price"]
    );
    assert_eq!(r.hidden.trim(), "x");
    // Junk hidden inside a word leaves the word whole.
    let r = render("buy vi<span style=\"display:none\">xyz</span>agra");
    assert_eq!(r.text.trim(), "buy viagra");
    // A background image: the colours say nothing.
    let r = render("<body background=\"bg.jpg\"><font color=white>on a picture</font>");
    assert!(r.hidden.trim().is_empty(), "{:?}", r.hidden);
}

fn seen_and_hidden(html: &str) -> (Vec<String>, Vec<String>) {
    let r = render(html);
    let words = |t: &str| t.split_whitespace().map(str::to_string).collect();
    (words(&r.text), words(&r.hidden))
}

/// Regression (review): `font-size:0` (or `visibility:hidden`) hid everything inside,
/// though both are inherited and a descendant sets them back: the `font-size:0`
/// wrapper of responsive mail layouts, its columns at 14px, hid a whole newsletter, and
/// a spammer's pitch with it.
#[test]
fn a_readable_size_or_visibility_inside_undoes_the_parents() {
    let (seen, hidden) = seen_and_hidden(
        "<div style=\"font-size:0\">&nbsp;<div style=\"display:inline-block;font-size:14px\">\
         Quarterly results</div><span style=\"font-size:2em\">tiny</span></div>\
         <div style=\"visibility:hidden\">secret<span style=\"visibility:visible\">shown</span></div>",
    );
    assert_eq!(seen, ["Quarterly", "results", "shown"]);
    assert_eq!(hidden, ["tiny", "secret"]);
}

/// Regression (review): a hidden `<p>` a block closes in a browser (`<div>`, `<table>`, a
/// heading, `<hr>`) kept hiding what followed, so a pitch after it counted as hidden.
#[test]
fn a_block_closes_a_hidden_paragraph() {
    let (seen, hidden) = seen_and_hidden(
        "<p style=\"display:none\">meeting agenda<div>cheap pills</div>\
         <p style=\"color:#fff\">minutes<hr>buy now",
    );
    assert_eq!(seen, ["cheap", "pills", "buy", "now"]);
    assert_eq!(hidden, ["meeting", "agenda", "minutes"]);
}

/// Regression (review): styles were read as if any hiding declaration won, and
/// `bgcolor` wherever it stood: text a browser shows counted as hidden.
#[test]
fn styles_are_read_as_a_browser_reads_them() {
    for html in [
        "<div hidden style=\"display:block\">cheap pills</div>",
        "<div style=\"display:none;display:block\">cheap pills</div>",
        "<td bgcolor=black><span bgcolor=white><font color=white>cheap pills</font></span>",
        "<td style=\"background-image:url(banner.jpg)\"><font color=#ffffff>cheap pills",
    ] {
        let (seen, hidden) = seen_and_hidden(html);
        assert_eq!(seen, ["cheap", "pills"], "{html}");
        assert!(hidden.is_empty(), "{html}: {hidden:?}");
    }
    for html in [
        "<div style=\"display:none !important;display:block\">meeting</div>",
        "<div hidden>meeting</div>",
        "<div hidden style=\"color:red\">meeting</div>",
    ] {
        assert_eq!(seen_and_hidden(html).1, ["meeting"], "{html}");
    }
}

/// A style sheet that sets a background leaves the colours unknown: white text there
/// is not taken for hidden (a dark-themed newsletter); hiding styles still hide.
#[test]
fn a_style_sheet_background_leaves_colours_unknown() {
    let (seen, hidden) = seen_and_hidden(
        "<style>.dark { background: #111 }</style><td class=dark>\
         <font color=#ffffff>Quarterly results</font><span style=\"display:none\">x</span>",
    );
    assert_eq!(seen, ["Quarterly", "results"]);
    assert_eq!(hidden, ["x"]);
    let (_, hidden) = seen_and_hidden("<style>p { color: red }</style><font color=white>x</font>");
    assert_eq!(
        hidden,
        ["x"],
        "a sheet without a background says nothing of it"
    );
}

/// Hidden "good words" styled by a class of the page's sheet are as hidden as those
/// styled inline; the inline style still wins over the sheet, and a sheet rule not
/// followed (inside `@media`) leaves its text shown.
#[test]
fn text_hidden_by_a_class_of_the_sheet_is_kept_apart() {
    let (seen, hidden) = seen_and_hidden(
        "<style>.g { display:none } span.w { color:#ffffff } #t { font-size:0 }\
         @media (max-width:480px) { .m { display:none } }</style>\
         <p>Cheap pills</p><div class=\"x g\">meeting agenda</div><span class=w>minutes</span>\
         <b id=t>regards</b><div class=g style=\"display:block\">buy now</div>\
         <div class=m>order</div>",
    );
    assert_eq!(seen, ["Cheap", "pills", "buy", "now", "order"]);
    assert_eq!(hidden, ["meeting", "agenda", "minutes", "regards"]);
}

/// Regression (review): a `<style>` block inside a comment was applied. A browser
/// reads none: not a sheet commented out, nor the `<!--[if mso]>` one only Outlook
/// reads (newsletters hide with it what they show other clients in its place), so real
/// text was taken from the classifier. One after a comment still counts.
#[test]
fn a_style_block_inside_a_comment_hides_nothing() {
    let (seen, hidden) = seen_and_hidden(
        "<!--[if mso]><style>.o { display:none !important }</style><![endif]-->\
         <!-- <style>.p { display:none }</style> --><!--[if !mso]><!-->\
         <div class=o>Quarterly report</div><p class=p>attached</p><!--<![endif]-->\
         <!-- x --><style>.h { display:none }</style><b class=h>regards</b>",
    );
    assert_eq!(seen, ["Quarterly", "report", "attached"]);
    assert_eq!(hidden, ["regards"]);
}

#[test]
fn malformed_markup_never_panics() {
    for s in [
        "<",
        "<a href='",
        "<!--",
        "&#xFFFFFFFF;",
        "<p <b>>",
        "<script>",
        "é<é>",
    ] {
        let _ = render(s);
    }
}

/// Regression (evasion probe): text a mail client never shows in the page (a title, what
/// only a browser without frames or plug-ins shows) read as shown, so a thousand ham
/// words in a `<title>` took 17 of 20 spam messages under `tag`. A textarea and `xmp`
/// are shown.
#[test]
fn text_of_elements_no_client_shows_is_hidden() {
    let (seen, hidden) = seen_and_hidden(
        "<html><head><title>meeting agenda</title></head><body>Cheap pills\
         <iframe src=x>minutes</iframe><noembed>quarterly</noembed><noframes>report</noframes>\
         <textarea>order</textarea><xmp>now</xmp></body></html>",
    );
    assert_eq!(seen, ["Cheap", "pills", "order", "now"]);
    assert_eq!(
        hidden,
        ["meeting", "agenda", "minutes", "quarterly", "report"]
    );
}

/// Regression (evasion probe): images and inputs broke words apart as blocks do, and
/// `display:inline` on a block was ignored, so `vi<img width=0 height=0>agra` read as
/// two words where a reader sees one.
#[test]
fn inline_layout_joins_words_as_a_reader_sees_them() {
    for html in [
        "vi<img src=x.gif width=0 height=0>agra",
        "vi<input type=hidden name=a>agra",
        "vi<div style=\"display:inline\">agra</div>",
        "vi<p style=\"display:inline-block\">ag</p>ra",
    ] {
        assert_eq!(seen_and_hidden(html).0, ["viagra"], "{html}");
    }
    // A block is a block whatever its tag says, and its end breaks words too.
    assert_eq!(
        seen_and_hidden("a<span style=\"display:block\">b</span>c").0,
        ["a", "b", "c"]
    );
    assert_eq!(seen_and_hidden("a<div>b</div>c").0, ["a", "b", "c"]);
}

/// Regression (evasion probe): the ways newsletters hide a preheader, which spammers use
/// to hide good words, read as shown text: a box with no room that clips, a position or
/// indent far off the page, a transform or clip to nothing, fonts of 2px or a tenth of
/// the parent's, see-through colours and colours in forms the reader did not know.
#[test]
fn every_common_way_of_hiding_text_is_read() {
    for style in [
        "max-height:0;overflow:hidden",
        "height:0px; overflow: hidden",
        "width:0;overflow:clip",
        "position:absolute;left:-9999px",
        "position:fixed;top:-2000em",
        "text-indent:-9999px",
        "transform:scale(0)",
        "transform: scaleY(0)",
        "clip:rect(0 0 0 0);position:absolute",
        "clip-path:inset(50%)",
        "font-size:2px",
        "font-size:1%",
        "font-size:0.05em",
        "opacity:0%",
        "color:transparent",
        "color:rgba(0,0,0,0)",
        "color:rgb(255 255 255)",
        "color:hsl(0, 0%, 100%)",
        "color:#ffffffff",
        "color:aliceblue",
    ] {
        let (seen, hidden) =
            seen_and_hidden(&format!("Cheap pills<div style=\"{style}\">meeting</div>"));
        assert_eq!(seen, ["Cheap", "pills"], "{style}");
        assert_eq!(hidden, ["meeting"], "{style}");
    }
    for style in [
        "height:0",
        "overflow:hidden",
        "position:absolute;left:10px",
        "position:relative;left:-9999px",
        "font-size:12px",
        "font-size:90%",
        "opacity:50%",
        "color:rgba(255,255,255,0.9);background:rgba(0,0,0,0.5)",
        "background:url(x.png) #fff;color:#fff",
        "background:var(--card) ;color:#fff",
    ] {
        let (seen, hidden) =
            seen_and_hidden(&format!("Cheap pills<div style=\"{style}\">meeting</div>"));
        assert_eq!(seen, ["Cheap", "pills", "meeting"], "{style}");
        assert!(hidden.is_empty(), "{style}: {hidden:?}");
    }
}

/// Regression (evasion probe): any background in a style sheet left every colour of the
/// page unknown, so `body{background:#fff}` made white good words count as shown. A
/// background whose rule is followed is applied like an inline one; the page takes the
/// body's; one under a selector not followed (or in `@media`) still leaves colours unknown.
#[test]
fn sheet_backgrounds_are_followed_where_their_rules_are() {
    let (seen, hidden) = seen_and_hidden(
        "<style>body{background:#fff} .w{color:#fff}</style>Cheap pills\
         <span class=w>meeting</span><font color=white>agenda</font>",
    );
    assert_eq!(seen, ["Cheap", "pills"]);
    assert_eq!(hidden, ["meeting", "agenda"]);
    // The page painted black without a `<body>` tag: black text is hidden, white shown.
    let (seen, hidden) = seen_and_hidden(
        "<style>body{background-color:black}</style><font color=white>Cheap</font>\
         <font color=black>meeting</font>",
    );
    assert_eq!(seen, ["Cheap"]);
    assert_eq!(hidden, ["meeting"]);
    // A dark cell by class: its white text is seen.
    let (seen, hidden) = seen_and_hidden(
        "<style>td.dark{background:#111}</style><td class=dark><font color=#fff>Quarterly</font>",
    );
    assert_eq!(seen, ["Quarterly"]);
    assert!(hidden.is_empty());
    for sheet in [
        "table td{background:#111}",
        "@media (prefers-color-scheme: dark){body{background:#000}}",
        "td:hover{background:#000}",
    ] {
        let (seen, hidden) = seen_and_hidden(&format!(
            "<style>{sheet}</style><font color=#fff>Quarterly</font>"
        ));
        assert_eq!(seen, ["Quarterly"], "{sheet}");
        assert!(hidden.is_empty(), "{sheet}");
    }
}

/// Regression (evasion probe): `<bdo dir=rtl>` shows its letters right to left; its
/// backwards text was read as written.
#[test]
fn a_right_to_left_bdo_reads_as_shown() {
    let r = render("Buy <bdo dir=\"RTL\">argaiv</bdo> now <bdo dir=ltr>pills</bdo>");
    let words: Vec<String> = crate::classify::normalize::normalize_text(&r.text)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(words, ["buy", "viagra", "now", "pills"]);
}

/// Regression (link evasion probe): a link in an Outlook conditional comment (which
/// Outlook shows, and other clients skip) was dropped with the comment.
#[test]
fn links_of_outlook_conditional_comments_are_collected() {
    let r = render(
        "<!--[if mso]><v:roundrect href=\"&#104;ttp://spam.test/\"><a href=\"http://spam.test/a\">Open</a></v:roundrect><![endif]-->\
         <!--[if !mso]><!--><a href=\"http://ok.test/\">Open</a><!--<![endif]--><!-- <a href=\"http://no.test/\"> -->",
    );
    assert_eq!(
        r.links,
        ["http://spam.test/", "http://spam.test/a", "http://ok.test/"]
    );
    // Nested ones render once, not once per level.
    let nested = "<!--[if mso]>".repeat(50_000);
    let r = render(&format!("{nested}<a href=\"http://x.test/\">"));
    assert!(r.links.len() <= 1, "{:?}", r.links.len());
}

/// Regression (review): an override ran on past its paragraph (a browser ends it there),
/// and an `ltr` `<bdo>` inside an `rtl` one was read backwards.
#[test]
fn an_override_ends_with_its_paragraph() {
    let words = |html: &str| -> Vec<String> {
        crate::classify::normalize::normalize_text(&render(html).text)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        words("<p>&#x202E;</p><p>Buy viagra now</p>"),
        ["buy", "viagra", "now"]
    );
    assert_eq!(
        words("<p><bdo dir=rtl>ti</p><p>viagra</p>"),
        ["it", "viagra"]
    );
    assert_eq!(
        words("<bdo dir=rtl><bdo dir=ltr>viagra</bdo></bdo>"),
        ["viagra"]
    );
}
