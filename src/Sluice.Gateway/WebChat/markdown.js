// A small, safe Markdown renderer for model answers. Safety comes from the order of work: every piece of input
// text is HTML-escaped before any markup is added, and the only markup added is a fixed set of tags; link targets
// must be http(s) URLs. Supported: paragraphs, headings (#…######), **bold**, *italic* (and _ forms), `inline
// code`, fenced code blocks (``` or ~~~, an unclosed fence runs to the end — answers arrive a piece at a time),
// - / * / + and 1. lists, [links](https://…).

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for use in HTML content and attribute values. */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, c => ESCAPES[c]);
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w.+#-]*)\s*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^ {0,3}[-*+]\s+(.*)$/;
const ORDERED = /^ {0,3}(\d{1,9})[.)]\s+(.*)$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;

/** Renders Markdown to an HTML string that is safe to assign to innerHTML. */
export function renderMarkdown(source) {
  // NUL is used below as a placeholder delimiter; it never belongs in text anyway.
  const lines = String(source ?? '').replace(/\0/g, '').replace(/\r\n?/g, '\n').split('\n');
  const out = [];
  let paragraph = [];
  let list = null; // { tag: 'ul' | 'ol', items: [] }

  const flushParagraph = () => {
    if (paragraph.length > 0) {
      out.push('<p>' + paragraph.map(renderInline).join('<br>') + '</p>');
      paragraph = [];
    }
  };
  const flushList = () => {
    if (list !== null) {
      out.push(`<${list.tag}>` + list.items.map(i => '<li>' + renderInline(i) + '</li>').join('') + `</${list.tag}>`);
      list = null;
    }
  };
  const flush = () => { flushParagraph(); flushList(); };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      flush();
      const marker = fence[1];
      const code = [];
      i++;
      while (i < lines.length && !(lines[i].trim().startsWith(marker[0].repeat(marker.length)) && lines[i].trim().replace(/[`~]/g, '') === '')) {
        code.push(lines[i]);
        i++;
      }
      const lang = fence[2] ? ` class="language-${escapeHtml(fence[2])}"` : '';
      out.push(`<pre><code${lang}>` + escapeHtml(code.join('\n')) + '</code></pre>');
      continue;
    }

    if (line.trim() === '') {
      flush();
      continue;
    }

    const heading = HEADING.exec(line);
    if (heading) {
      flush();
      const level = heading[1].length;
      out.push(`<h${level}>` + renderInline(heading[2]) + `</h${level}>`);
      continue;
    }

    if (RULE.test(line)) {
      flush();
      out.push('<hr>');
      continue;
    }

    const bullet = BULLET.exec(line);
    const ordered = bullet ? null : ORDERED.exec(line);
    if (bullet || ordered) {
      flushParagraph();
      const tag = bullet ? 'ul' : 'ol';
      if (list === null || list.tag !== tag) {
        flushList();
        list = { tag, items: [] };
      }
      list.items.push(bullet ? bullet[1] : ordered[2]);
      continue;
    }

    if (list !== null && /^\s{2,}\S/.test(line)) {
      // An indented line continues the last list item.
      list.items[list.items.length - 1] += ' ' + line.trim();
      continue;
    }

    flushList();
    paragraph.push(line.trim());
  }

  flush();
  return out.join('\n');
}

/** Inline markup on one block of text: code spans, links, bold, italic. */
export function renderInline(text) {
  const codes = [];
  // Code spans first: their content is escaped and shielded from the other rules.
  let html = String(text).replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) => {
    codes.push('<code>' + escapeHtml(code.trim() === '' ? code : code.replace(/^ (.*) $/, '$1')) + '</code>');
    return `\0${codes.length - 1}\0`;
  });

  html = escapeHtml(html);

  // Links: only absolute http(s) targets become anchors; anything else stays as the literal text.
  html = html.replace(/\[([^\]\0]+)\]\((https?:\/\/[^\s()<>]+)\)/gi,
    (_, label, url) => `<a href="${url}" target="_blank" rel="noopener noreferrer nofollow">${label}</a>`);

  html = html
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/(^|[^*])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, '$1<em>$2</em>')
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, '$1<em>$2</em>');

  return html.replace(/\0(\d+)\0/g, (_, n) => codes[Number(n)]);
}
