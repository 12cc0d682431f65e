package feedtrends.flink;

import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.zip.CRC32;

import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.TypeSerializerSingleton;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonGenerator;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;

/**
 * {@code fold_term_hits(term, published_at, article_id, title, feed_url, k)}: the aggregate of one
 * (window, term bucket)'s term hits, one aggregate per term, as a JSON array of
 * {@code [term, articles, feed_counts, best, sketch]} in term order.
 *
 * <p>Each aggregate is what {@code udfs.windows.fold_hits} builds from the term's hits, in the
 * layout of {@code TermWindow.to_state()}: the number of hits; {@code [feed_url, hits]} sorted
 * by feed_url; the k smallest {@code [published_at, article_id, title]}, ascending; the
 * {@code SKETCH_SIZE} smallest distinct CRC-32s of the UTF-8 article ids, ascending. Strings
 * are ordered by code point, as Python orders them. tests/integration hold it to the Python
 * fold on the cluster's own JVM.
 *
 * <p>Why an aggregate function with {@code merge}: the planner then splits the window
 * aggregation in two, a local one chained before the exchange and a global one after it, so
 * the exchange carries one accumulator per (window, bucket) and flush instead of every term
 * hit with its title, and no hit is written to state one by one. The accumulator holds only
 * what the result needs (k examples, SKETCH_SIZE hashes per term), so it stays small however
 * many articles a term has.
 */
@FunctionHint(
        accumulator = @DataTypeHint(value = "RAW", bridgedTo = FoldTermHits.Acc.class,
                rawSerializer = FoldTermHits.AccSerializer.class),
        output = @DataTypeHint("STRING"))
public class FoldTermHits extends AggregateFunction<String, FoldTermHits.Acc> {
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

    private static final Comparator<Example> EXAMPLE_ORDER = Comparator.<Example>comparingLong(e -> e.publishedAt)
            .thenComparing(e -> e.articleId, CODE_POINT_ORDER)
            .thenComparing(e -> e.title, Comparator.nullsFirst(CODE_POINT_ORDER));

    /** (published_at, article_id, title): one example; Python's tuple order is EXAMPLE_ORDER. */
    static final class Example {
        final long publishedAt;
        final String articleId;
        final String title;

        Example(long publishedAt, String articleId, String title) {
            this.publishedAt = publishedAt;
            this.articleId = articleId;
            this.title = title;
        }
    }

    /** One term's aggregate so far: {@code TermWindow}'s fields, bounded by k and SKETCH_SIZE. */
    static final class TermAcc {
        long articles;
        final Map<String, Integer> feeds = new HashMap<>();
        final ArrayList<Example> best = new ArrayList<>(); // ascending, at most k
        final TreeSet<Long> sketch = new TreeSet<>(); // the smallest distinct hashes, at most SKETCH_SIZE

        void addExample(Example e, int k) {
            if (best.size() >= k && (k == 0 || EXAMPLE_ORDER.compare(e, best.get(best.size() - 1)) >= 0)) {
                return;
            }
            int at = Collections.binarySearch(best, e, EXAMPLE_ORDER);
            best.add(at < 0 ? -at - 1 : at, e);
            if (best.size() > k) {
                best.remove(best.size() - 1);
            }
        }

        void addHash(long hash) {
            if (sketch.size() < SKETCH_SIZE || hash < sketch.last()) {
                sketch.add(hash);
                if (sketch.size() > SKETCH_SIZE) {
                    sketch.pollLast();
                }
            }
        }

        void merge(TermAcc other, int k) {
            articles += other.articles;
            other.feeds.forEach((feed, n) -> feeds.merge(feed, n, Integer::sum));
            for (Example e : other.best) {
                addExample(e, k);
            }
            for (long hash : other.sketch) {
                addHash(hash);
            }
        }
    }

    /** The accumulator: each term's aggregate, and k (the same in every call of one query). */
    public static final class Acc {
        int k;
        final Map<String, TermAcc> terms = new HashMap<>();
    }

    @Override
    public Acc createAccumulator() {
        return new Acc();
    }

    public void accumulate(Acc acc, String term, Long publishedAt, String articleId, String title, String feedUrl,
            Integer k) {
        if (term == null || publishedAt == null || articleId == null || k == null) {
            throw new IllegalArgumentException("fold_term_hits: term, published_at, article_id and k must not be null");
        }
        acc.k = k;
        TermAcc t = acc.terms.computeIfAbsent(term, x -> new TermAcc());
        t.articles++;
        t.feeds.merge(feedUrl, 1, Integer::sum);
        t.addExample(new Example(publishedAt, articleId, title), k);
        t.addHash(articleHash(articleId));
    }

    public void merge(Acc acc, Iterable<Acc> others) {
        for (Acc other : others) {
            acc.k = Math.max(acc.k, other.k);
            other.terms.forEach((term, t) -> {
                acc.terms.computeIfAbsent(term, x -> new TermAcc()).merge(t, acc.k);
            });
        }
    }

    @Override
    public String getValue(Acc acc) {
        if (acc.terms.isEmpty()) {
            return null;
        }
        try {
            return json(acc);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static String json(Acc acc) throws IOException {
        List<String> terms = new ArrayList<>(acc.terms.keySet());
        terms.sort(CODE_POINT_ORDER);
        StringWriter out = new StringWriter();
        try (JsonGenerator g = JSON.createGenerator(out)) {
            g.writeStartArray();
            for (String term : terms) {
                TermAcc t = acc.terms.get(term);
                g.writeStartArray();
                g.writeString(term);
                g.writeNumber(t.articles);

                List<Map.Entry<String, Integer>> feeds = new ArrayList<>(t.feeds.entrySet());
                feeds.sort(Map.Entry.comparingByKey(Comparator.nullsFirst(CODE_POINT_ORDER)));
                g.writeStartArray();
                for (Map.Entry<String, Integer> feed : feeds) {
                    g.writeStartArray();
                    g.writeString(feed.getKey());
                    g.writeNumber(feed.getValue());
                    g.writeEndArray();
                }
                g.writeEndArray();

                g.writeStartArray();
                for (Example e : t.best) {
                    g.writeStartArray();
                    g.writeNumber(e.publishedAt);
                    g.writeString(e.articleId);
                    g.writeString(e.title);
                    g.writeEndArray();
                }
                g.writeEndArray();

                g.writeStartArray();
                for (long hash : t.sketch) {
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

    /**
     * The accumulator in state and on the wire: a format mark, the length of the rest, then k and
     * per term its name, articles, feed counts, examples and hashes. The rest is built in one
     * array and handed over in one write (and read back in one read): the table runtime hands
     * this serializer stream wrappers over byte arrays, where every small write or read of a
     * field is a call through the stream, and a generic serializer would reflect over the maps.
     */
    public static final class AccSerializer extends TypeSerializerSingleton<Acc> {
        private static final long serialVersionUID = 1L;

        /**
         * First int of the format (negative: the first format began with k, never negative), so
         * state written in another layout fails with a clear message instead of a misread.
         */
        static final int FORMAT = -2;

        @Override
        public boolean isImmutableType() {
            return false;
        }

        @Override
        public Acc createInstance() {
            return new Acc();
        }

        @Override
        public Acc copy(Acc from) {
            Acc to = new Acc();
            to.k = from.k;
            from.terms.forEach((term, t) -> {
                TermAcc c = new TermAcc();
                c.articles = t.articles;
                c.feeds.putAll(t.feeds);
                c.best.addAll(t.best); // examples are immutable
                c.sketch.addAll(t.sketch);
                to.terms.put(term, c);
            });
            return to;
        }

        @Override
        public Acc copy(Acc from, Acc reuse) {
            return copy(from);
        }

        @Override
        public int getLength() {
            return -1;
        }

        @Override
        public void serialize(Acc acc, DataOutputView out) throws IOException {
            Bytes b = new Bytes(64 + 128 * acc.terms.size());
            b.putInt(acc.k);
            b.putInt(acc.terms.size());
            for (Map.Entry<String, TermAcc> entry : acc.terms.entrySet()) {
                TermAcc t = entry.getValue();
                b.putString(entry.getKey());
                b.putLong(t.articles);
                b.putInt(t.feeds.size());
                for (Map.Entry<String, Integer> feed : t.feeds.entrySet()) {
                    b.putString(feed.getKey());
                    b.putInt(feed.getValue());
                }
                b.putInt(t.best.size());
                for (Example e : t.best) {
                    b.putLong(e.publishedAt);
                    b.putString(e.articleId);
                    b.putString(e.title);
                }
                b.putInt(t.sketch.size());
                for (long hash : t.sketch) {
                    b.putLong(hash);
                }
            }
            out.writeInt(FORMAT);
            out.writeInt(b.size);
            out.write(b.data, 0, b.size);
        }

        @Override
        public Acc deserialize(DataInputView in) throws IOException {
            ByteBuffer b = ByteBuffer.wrap(readRest(in));
            Acc acc = new Acc();
            acc.k = b.getInt();
            int terms = b.getInt();
            for (int i = 0; i < terms; i++) {
                String term = getString(b);
                TermAcc t = new TermAcc();
                t.articles = b.getLong();
                int feeds = b.getInt();
                for (int j = 0; j < feeds; j++) {
                    String feed = getString(b);
                    t.feeds.put(feed, b.getInt());
                }
                int best = b.getInt();
                for (int j = 0; j < best; j++) {
                    long publishedAt = b.getLong();
                    String articleId = getString(b);
                    t.best.add(new Example(publishedAt, articleId, getString(b)));
                }
                int sketch = b.getInt();
                for (int j = 0; j < sketch; j++) {
                    t.sketch.add(b.getLong());
                }
                acc.terms.put(term, t);
            }
            return acc;
        }

        /** The format mark and the length, then the rest of one accumulator's bytes. */
        private static byte[] readRest(DataInputView in) throws IOException {
            int format = in.readInt();
            if (format != FORMAT) {
                throw new IOException("fold_term_hits: an accumulator in another format (" + format
                        + "), written by an earlier build; rebuild the job's state with `feedtrends replay`");
            }
            byte[] rest = new byte[in.readInt()];
            in.readFully(rest);
            return rest;
        }

        private static String getString(ByteBuffer b) {
            int length = b.getInt();
            if (length < 0) {
                return null;
            }
            String value = new String(b.array(), b.position(), length, StandardCharsets.UTF_8);
            b.position(b.position() + length);
            return value;
        }

        @Override
        public Acc deserialize(Acc reuse, DataInputView in) throws IOException {
            return deserialize(in);
        }

        @Override
        public void copy(DataInputView in, DataOutputView out) throws IOException {
            byte[] rest = readRest(in);
            out.writeInt(FORMAT);
            out.writeInt(rest.length);
            out.write(rest);
        }

        @Override
        public TypeSerializerSnapshot<Acc> snapshotConfiguration() {
            return new AccSerializerSnapshot();
        }
    }

    /** A growable big-endian byte array: the serializer's one buffer per accumulator. */
    static final class Bytes {
        byte[] data;
        int size;

        Bytes(int capacity) {
            data = new byte[capacity];
        }

        private void ensure(int more) {
            if (size + more > data.length) {
                data = Arrays.copyOf(data, Math.max(data.length * 2, size + more));
            }
        }

        void putInt(int v) {
            ensure(4);
            data[size++] = (byte) (v >>> 24);
            data[size++] = (byte) (v >>> 16);
            data[size++] = (byte) (v >>> 8);
            data[size++] = (byte) v;
        }

        void putLong(long v) {
            putInt((int) (v >>> 32));
            putInt((int) v);
        }

        /** UTF-8 with its length; -1 for null. */
        void putString(String value) {
            if (value == null) {
                putInt(-1);
                return;
            }
            byte[] bytes = value.getBytes(StandardCharsets.UTF_8);
            putInt(bytes.length);
            ensure(bytes.length);
            System.arraycopy(bytes, 0, data, size, bytes.length);
            size += bytes.length;
        }
    }

    /** Restores {@link AccSerializer} (it has no configuration). */
    public static final class AccSerializerSnapshot extends SimpleTypeSerializerSnapshot<Acc> {
        public AccSerializerSnapshot() {
            super(AccSerializer::new);
        }
    }
}
