package feedtrends.flink;

import java.util.Collections;

import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;

/**
 * Passes records and watermarks through unchanged, and gives back after a restore the
 * watermark the source had reached before it.
 *
 * <p>When every partition of the source has gone idle, the source "flushes" its watermark:
 * it emits the highest one of its partitions (max record timestamp - lag), which is what
 * closes the last windows of a stream that has stopped.  Flink keeps no watermark in a
 * checkpoint, so a job restored after the last records were read has no partition with a
 * watermark, flushes nothing, and its last windows wait for input that may never come.
 *
 * <p>This operator keeps the highest record timestamp it has seen in operator state (union
 * list state: after a restore, at any parallelism, every subtask holds the maximum over all of
 * them).  When its input goes idle, it first emits {@code max - lag} if that is ahead of the
 * last watermark it sent, then the idle status.  In a run without failures that is the
 * source's own flush, so it changes nothing; after a restore it is the flush the lost source
 * state would have made.  Watermarks behind the last one sent are not forwarded: a
 * downstream timer service must never see time go back.
 */
public final class WatermarkRestorer<T> extends AbstractStreamOperator<T> implements OneInputStreamOperator<T, T> {

    private static final long serialVersionUID = 1L;

    private final long lagMs;

    private transient ListState<Long> maxTimestampState;
    private transient long maxTimestamp;
    private transient long lastWatermark;

    /** @param lagMs the source's bound: its watermark is {@code max record timestamp - lagMs}. */
    public WatermarkRestorer(long lagMs) {
        if (lagMs < 0) {
            throw new IllegalArgumentException("lagMs must be >= 0, got " + lagMs);
        }
        this.lagMs = lagMs;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        maxTimestamp = Long.MIN_VALUE;
        lastWatermark = Long.MIN_VALUE;
        maxTimestampState = context.getOperatorStateStore()
                .getUnionListState(new ListStateDescriptor<>("max-record-timestamp", Long.class));
        for (Long value : maxTimestampState.get()) {
            maxTimestamp = Math.max(maxTimestamp, value);
        }
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        maxTimestampState.update(Collections.singletonList(maxTimestamp));
    }

    @Override
    public void processElement(StreamRecord<T> element) throws Exception {
        if (element.hasTimestamp() && element.getTimestamp() > maxTimestamp) {
            maxTimestamp = element.getTimestamp();
        }
        output.collect(element);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        if (mark.getTimestamp() > lastWatermark) {
            lastWatermark = mark.getTimestamp();
            super.processWatermark(mark);
        }
    }

    @Override
    public void processWatermarkStatus(WatermarkStatus status) throws Exception {
        if (status.isIdle() && maxTimestamp != Long.MIN_VALUE && maxTimestamp - lagMs > lastWatermark) {
            // Sent while the output is still active: an idle output drops watermarks.
            processWatermark(new Watermark(maxTimestamp - lagMs));
        }
        super.processWatermarkStatus(status);
    }
}
