package dev.keraskd.sample

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Color
import org.json.JSONObject
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import kotlin.math.exp
import kotlin.math.roundToInt

/**
 * Runs a model exported by `keras_kd.export.to_tflite` (signature `serving_default`,
 * input `input` [batch, H, W, C], output `logits` [batch, classes]) on one bitmap.
 *
 * Reads the sidecars written next to the model: `NAME.labels.txt` (one class per line) and
 * `NAME.metadata.json` (input shape and dtype, `input_scale`, quantization of input/output),
 * so float32, float16, dynamic-range and full-int8 files (int8 or float I/O) all work.
 */
class Classifier(context: Context, modelName: String) : AutoCloseable {
    private val stem = modelName.removeSuffix(".tflite")
    private val interpreter = Interpreter(loadModel(context, modelName))
    val labels: List<String> =
        context.assets.open("$stem.labels.txt").bufferedReader().readLines().filter { it.isNotEmpty() }
    private val metadata = JSONObject(
        context.assets.open("$stem.metadata.json").bufferedReader().readText()
    )
    private val input = metadata.getJSONObject("input")
    private val output = metadata.getJSONObject("output")
    private val shape = input.getJSONArray("shape").let { a -> IntArray(a.length()) { a.getInt(it) } }
    private val height = shape[1]
    private val width = shape[2]
    private val channels = shape[3]
    private val inputScale = metadata.getDouble("input_scale").toFloat()
    private val inputIsInt8 = input.getString("dtype") == "int8"
    private val outputIsInt8 = output.getString("dtype") == "int8"

    data class Result(val label: String, val index: Int, val probability: Float)

    /** Classifies one image; the bitmap is resized to the model's input size. */
    fun classify(bitmap: Bitmap): List<Result> {
        val scaled = Bitmap.createScaledBitmap(bitmap, width, height, true)
        val bytesPerValue = if (inputIsInt8) 1 else 4
        val inputBuffer = ByteBuffer.allocateDirect(height * width * channels * bytesPerValue)
            .order(ByteOrder.nativeOrder())
        val q = input.getJSONObject("quantization")
        val qScale = q.getDouble("scale").toFloat()
        val qZero = q.getInt("zero_point")
        for (y in 0 until height) for (x in 0 until width) {
            val pixel = scaled.getPixel(x, y)
            val rgb = intArrayOf(Color.red(pixel), Color.green(pixel), Color.blue(pixel))
            // Grayscale models (MNIST, digits) take the mean of R, G, B as the raw pixel value.
            val raw = if (channels == 1) listOf(rgb.average().toFloat()) else rgb.map { it.toFloat() }
            for (value in raw) {
                val normalized = value * inputScale  // the training normalisation (metadata)
                if (inputIsInt8) {
                    val quantized = (normalized / qScale).roundToInt() + qZero
                    inputBuffer.put(quantized.coerceIn(-128, 127).toByte())
                } else {
                    inputBuffer.putFloat(normalized)
                }
            }
        }
        inputBuffer.rewind()
        val classes = labels.size
        val outputBuffer = ByteBuffer.allocateDirect(classes * (if (outputIsInt8) 1 else 4))
            .order(ByteOrder.nativeOrder())
        interpreter.resizeInput(0, intArrayOf(1, height, width, channels))
        interpreter.runSignature(mapOf("input" to inputBuffer), mapOf("logits" to outputBuffer),
                                 "serving_default")
        outputBuffer.rewind()
        val oq = output.getJSONObject("quantization")
        val logits = FloatArray(classes) {
            if (outputIsInt8) (outputBuffer.get() - oq.getInt("zero_point")) * oq.getDouble("scale").toFloat()
            else outputBuffer.getFloat()
        }
        val max = logits.max()
        val exps = logits.map { exp((it - max).toDouble()) }
        val total = exps.sum()
        return exps.mapIndexed { i, e -> Result(labels[i], i, (e / total).toFloat()) }
            .sortedByDescending { it.probability }
    }

    override fun close() = interpreter.close()

    private fun loadModel(context: Context, name: String): MappedByteBuffer {
        context.assets.openFd(name).use { fd ->
            FileInputStream(fd.fileDescriptor).channel.use { channel ->
                return channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }
    }
}
