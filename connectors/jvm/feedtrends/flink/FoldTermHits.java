package feedtrends.flink;

import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.zip.CRC32;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonGenerator;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code fold_term_hits(hits, k)}: one (window, term bucket)'s term hits, a JSON array of
 * {@code [term, published_at, article_id, title, feed_url]}, folded into one aggregate per
 * term, a JSON array of {@code [term, articles, feed_counts, best, sketch]} in term order.
 *
 * <p>Each aggregate is what {@code udfs.windows.fold_hits} builds from the term's hits, in the
 * layout of {@code TermWindow.to_state()}: the number of hits; {@code [feed_url, hits]} sorted
 * by feed_url; the k smallest {@code [published_at, article_id, title]}, ascending; the
 * {@code SKETCH_SIZE} smallest distinct CRC-32s of the UTF-8 article ids, ascending. Strings
 * are ordered by code point, as Python orders them. tests/integration hold it to the Python
 * fold on the cluster's own JVM.
 *
 * <p>Why in the JVM: every term hit of an on-time article would otherwise be decoded and
 * folded in Python; the folded bucket is a fraction of the hits' size.
 */
public class FoldTermHits extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    /** {@code udfs.windows.SKETCH_SIZE}. */
    static final int SKETCH_SIZE = 16;

    private static final JsonFactory JSON = new JsonFactory();

    /** Python's order of str: by code point (String.compareTo orders UTF-16 units). */
    static final Comparator<String> CODE_POINT_ORDER = (a, b) -> {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i);
            int cb = b.codePointAt(j);
            if (ca != cb) {
                return Integer.compare(ca, cb);
            }
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Boolean.compare(i < a.length(), j < b.length());
    };

    private static final Comparator<Hit> EXAMPLE_ORDER = Comparator.<Hit>comparingLong(h -> h.publishedAt)
            .thenComparing(h -> h.articleId, CODE_POINT_ORDER)
            .thenComparing(h -> h.title, Comparator.nullsFirst(CODE_POINT_ORDER));

    private static final class Hit {
        final long publishedAt;
        final String articleId;
        final String title;
        final String feedUrl;

        Hit(long publishedAt, String articleId, String title, String feedUrl) {
            this.publishedAt = publishedAt;
            this.articleId = articleId;
            this.title = title;
            this.feedUrl = feedUrl;
        }
    }

    public String eval(String hits, Integer k) {
        if (hits == null || k == null) {
            return null;
        }
        try {
            return fold(read(hits), k);
        } catch (IOException e) {
            throw new UncheckedIOException("fold_term_hits: not an array of term hits", e);
        }
    }

    private static Map<String, List<Hit>> read(String hits) throws IOException {
        Map<String, List<Hit>> byTerm = new TreeMap<>(CODE_POINT_ORDER);
        try (JsonParser p = JSON.createParser(hits)) {
            expect(p.nextToken(), JsonToken.START_ARRAY);
            while (p.nextToken() == JsonToken.START_ARRAY) {
                p.nextToken();
                String term = p.getValueAsString();
                p.nextToken();
                long publishedAt = p.getLongValue();
                p.nextToken();
                String articleId = p.getValueAsString();
                p.nextToken();
                String title = p.getValueAsString();
                p.nextToken();
                String feedUrl = p.getValueAsString();
                expect(p.nextToken(), JsonToken.END_ARRAY);
                byTerm.computeIfAbsent(term, t -> new ArrayList<>()).add(new Hit(publishedAt, articleId, title, feedUrl));
            }
        }
        return byTerm;
    }

    private static void expect(JsonToken got, JsonToken want) throws IOException {
        if (got != want) {
            throw new IOException("expected " + want + ", got " + got);
        }
    }

    private static String fold(Map<String, List<Hit>> byTerm, int k) throws IOException {
        StringWriter out = new StringWriter();
        try (JsonGenerator g = JSON.createGenerator(out)) {
            g.writeStartArray();
            for (Map.Entry<String, List<Hit>> term : byTerm.entrySet()) {
                List<Hit> hits = term.getValue();
                g.writeStartArray();
                g.writeString(term.getKey());
                g.writeNumber(hits.size());

                Map<String, Integer> feeds = new TreeMap<>(Comparator.nullsFirst(CODE_POINT_ORDER));
                TreeSet<Long> hashes = new TreeSet<>();
                for (Hit h : hits) {
                    feeds.merge(h.feedUrl, 1, Integer::sum);
                    hashes.add(articleHash(h.articleId));
                }
                g.writeStartArray();
                for (Map.Entry<String, Integer> feed : feeds.entrySet()) {
                    g.writeStartArray();
                    g.writeString(feed.getKey());
                    g.writeNumber(feed.getValue());
                    g.writeEndArray();
                }
                g.writeEndArray();

                g.writeStartArray();
                if (k > 0) {
                    hits.sort(EXAMPLE_ORDER);
                    for (Hit h : hits.subList(0, Math.min(k, hits.size()))) {
                        g.writeStartArray();
                        g.writeNumber(h.publishedAt);
                        g.writeString(h.articleId);
                        g.writeString(h.title);
                        g.writeEndArray();
                    }
                }
                g.writeEndArray();

                g.writeStartArray();
                int n = 0;
                for (long hash : hashes) {
                    if (n++ == SKETCH_SIZE) {
                        break;
                    }
                    g.writeNumber(hash);
                }
                g.writeEndArray();
                g.writeEndArray();
            }
            g.writeEndArray();
        }
        return out.toString();
    }

    /** {@code udfs.windows.article_hash}: zlib's CRC-32 of the UTF-8 bytes. */
    static long articleHash(String articleId) {
        CRC32 crc = new CRC32();
        crc.update(articleId.getBytes(StandardCharsets.UTF_8));
        return crc.getValue();
    }
}
