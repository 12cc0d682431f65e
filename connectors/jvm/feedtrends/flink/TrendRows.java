package feedtrends.flink;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.json.JsonReadFeature;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The ranker's output rows, a JSON array of the rows' JSON objects (each exactly
 * {@code TrendRow.json_text()}), as the sinks take them: one row each, with its columns
 * ({@code udfs.trend_row.COLUMNS}, in that order, {@code window_date} the UTC date of
 * {@code window_start}), then the Kafka key ({@code TrendRow.key()}) and the Kafka value, which
 * is the object's own text, byte for byte. The row type is the sinks' ({@code
 * connectors.flink_io.TREND_TYPE}), given where the job applies this function.
 *
 * <p>Why in the JVM: the ranker then hands over one string per ranking instead of a Flink row
 * of sixteen fields per output row, each converted field by field between Python and Java.
 * A DataStream function, not a SQL table function: a correlate's output row keeps its input
 * (the whole batch), and the chain copies every row it passes on. tests/integration hold the
 * rows to Python's.
 */
public class TrendRows implements FlatMapFunction<String, Row> {
    private static final long serialVersionUID = 1L;

    private static final long DAY_MS = 86_400_000L;

    // Python's json writes NaN and Infinity unless told not to; read what it writes.
    private static final JsonFactory JSON = JsonFactory.builder()
            .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
            .build();

    @Override
    public void flatMap(String batch, Collector<Row> out) {
        if (batch == null) {
            return;
        }
        try (JsonParser p = JSON.createParser(batch)) {
            expect(p.nextToken(), JsonToken.START_ARRAY);
            while (p.nextToken() == JsonToken.START_OBJECT) {
                // Offsets into the batch: the parser reads from a String, so they count chars.
                int start = (int) p.currentTokenLocation().getCharOffset();
                Row row = readRow(p);
                int end = (int) p.currentTokenLocation().getCharOffset() + 1;
                long windowStart = (Long) row.getField(0);
                row.setField(13, LocalDate.ofEpochDay(Math.floorDiv(windowStart, DAY_MS)).toString());
                row.setField(14, windowStart + "|" + row.getField(2));
                row.setField(15, batch.substring(start, end));
                out.collect(row);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("TrendRows: not an array of trend rows", e);
        }
    }

    /** One object's fields, in the column order; the parser is left on its END_OBJECT. */
    private static Row readRow(JsonParser p) throws IOException {
        Row row = new Row(16);
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String name = p.currentName();
            JsonToken value = p.nextToken();
            switch (name) {
                case "window_start": row.setField(0, p.getLongValue()); break;
                case "window_end": row.setField(1, p.getLongValue()); break;
                case "term": row.setField(2, p.getText()); break;
                case "articles": row.setField(3, p.getIntValue()); break;
                case "feeds": row.setField(4, p.getIntValue()); break;
                case "baseline": row.setField(5, p.getDoubleValue()); break;
                case "score": row.setField(6, p.getDoubleValue()); break;
                case "rank": row.setField(7, value == JsonToken.VALUE_NULL ? null : p.getIntValue()); break;
                case "revision": row.setField(8, p.getIntValue()); break;
                case "emitted_at": row.setField(9, p.getLongValue()); break;
                case "examples": row.setField(10, strings(p)); break;
                case "aliases": row.setField(11, strings(p)); break;
                case "links": row.setField(12, strings(p)); break;
                default: throw new IOException("unknown trend row field " + name);
            }
        }
        expect(p.currentToken(), JsonToken.END_OBJECT);
        for (int i = 0; i < 13; i++) {
            if (row.getField(i) == null && i != 7) {
                throw new IOException("trend row without field " + i);
            }
        }
        return row;
    }

    private static String[] strings(JsonParser p) throws IOException {
        expect(p.currentToken(), JsonToken.START_ARRAY);
        List<String> out = new ArrayList<>();
        while (p.nextToken() == JsonToken.VALUE_STRING) {
            out.add(p.getText());
        }
        expect(p.currentToken(), JsonToken.END_ARRAY);
        return out.toArray(new String[0]);
    }

    private static void expect(JsonToken got, JsonToken want) throws IOException {
        if (got != want) {
            throw new IOException("expected " + want + ", got " + got);
        }
    }
}
