package feedtrends.flink;

import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code term_bucket_key(term, keys)}: the key label of the term bucket a term falls into,
 * the same as {@code udfs.buckets.bucket_key} in Python: {@code keys[crc32(utf-8 of term) mod
 * keys.length]}, where {@code keys} are {@code udfs.buckets.bucket_keys(buckets)}.
 *
 * <p>The job's JVM counting groups a window's on-time term hits by this key, so that
 * term-windows (keyed by it) receives one record per (window, bucket).  An article that
 * reaches term-windows on its own is bucketed in Python; both must agree, which
 * tests/integration check on the cluster's own JVM.  {@link CRC32} is zlib's CRC-32.
 */
public class TermBucketKey extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    public Integer eval(String term, Integer[] keys) {
        if (term == null || keys == null || keys.length == 0) {
            return null;
        }
        CRC32 crc = new CRC32();
        crc.update(term.getBytes(StandardCharsets.UTF_8));
        return keys[(int) (crc.getValue() % keys.length)];
    }
}
