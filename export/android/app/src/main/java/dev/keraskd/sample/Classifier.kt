package dev.keraskd.sample

import android.content.Context
import android.graphics.Bitmap
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import org.json.JSONObject
import kotlin.math.exp
import kotlin.math.roundToInt

/**
 * Classifies a photo with a keras_kd image student (e.g. the CIFAR-10 student exported to
 * `runs/cifar10/student_int8.tflite`) on LiteRT's `CompiledModel` API, on the CPU.
 *
 * The model normalises inside (its first layer), so it takes the photo's raw RGB pixels
 * 0-255: float32 `[1, H, W, 3]` (the file's batch dimension is dynamic; LiteRT allocates its
 * buffers at batch 1). A file exported with `int8_io=True` takes int8 instead, quantized with
 * the input's scale and zero point from the metadata sidecar: `q = round(pixel / scale) + zp`.
 * Sidecars read from the assets: `NAME.labels.txt` (one class per line) and
 * `NAME.metadata.json` (input shape, dtypes, quantization, `input_scale`).
 */
class Classifier(context: Context, modelName: String) : AutoCloseable {
    data class Result(val label: String, val index: Int, val probability: Float)

    private val stem = modelName.removeSuffix(".tflite")
    private val metadata = JSONObject(
        context.assets.open("$stem.metadata.json").bufferedReader().use { it.readText() }
    )
    val labels: List<String> = context.assets.open("$stem.labels.txt").bufferedReader()
        .use { reader -> reader.readLines().filter { it.isNotEmpty() } }
    private val input = metadata.getJSONObject("input")
    private val output = metadata.getJSONObject("output")
    private val shape = input.getJSONArray("shape").let { a -> IntArray(a.length()) { a.getInt(it) } }
    private val height = shape[1]
    private val width = shape[2]

    init {
        val inputScale = metadata.getDouble("input_scale")
        require(shape.size == 4 && shape[3] == 3 && inputScale == 1.0) {
            "$modelName takes input ${shape.toList()} with input_scale $inputScale; this sample " +
                "feeds raw RGB pixels 0-255 (input_scale 1.0): export a keras_kd image model, " +
                "which normalises inside (see ${metadata.optString("input_description")})"
        }
    }

    private val model = CompiledModel.create(
        context.assets, modelName, CompiledModel.Options(Accelerator.CPU)
    )
    private val inputBuffers = model.createInputBuffers()
    private val outputBuffers = model.createOutputBuffers()

    /** Top classes of [photo], most probable first (ties: the lower class index first). */
    fun classify(photo: Bitmap): List<Result> {
        val pixels = rawPixels(photo)
        if (input.getString("dtype") == "int8") {
            val q = input.getJSONObject("quantization")
            val scale = q.getDouble("scale").toFloat()
            val zeroPoint = q.getInt("zero_point")
            inputBuffers[0].writeInt8(ByteArray(pixels.size) { i ->
                ((pixels[i] / scale).roundToInt() + zeroPoint).coerceIn(-128, 127).toByte()
            })
        } else {
            inputBuffers[0].writeFloat(pixels)
        }
        model.run(inputBuffers, outputBuffers)
        val logits = if (output.getString("dtype") == "int8") {
            val q = output.getJSONObject("quantization")
            val scale = q.getDouble("scale").toFloat()
            val zeroPoint = q.getInt("zero_point")
            outputBuffers[0].readInt8().map { (it - zeroPoint) * scale }.toFloatArray()
        } else {
            outputBuffers[0].readFloat()
        }
        val max = logits.max()
        val exps = logits.map { exp((it - max).toDouble()) }
        val total = exps.sum()
        return exps.mapIndexed { i, e -> Result(labels[i], i, (e / total).toFloat()) }
            .sortedByDescending { it.probability }  // stable sort
    }

    /**
     * The photo's raw RGB pixels 0-255 as floats, row by row, R G B per pixel (HxWxC).
     * Resized to the model's input only when its size differs (bilinear filtering, the whole
     * photo, like Keras' `image_dataset_from_directory`); no normalisation: the model does it.
     */
    private fun rawPixels(photo: Bitmap): FloatArray {
        val bitmap = if (photo.width == width && photo.height == height) photo
        else Bitmap.createScaledBitmap(photo, width, height, true)
        val argb = IntArray(width * height)
        bitmap.getPixels(argb, 0, width, 0, 0, width, height)
        val pixels = FloatArray(width * height * 3)
        for ((i, color) in argb.withIndex()) {
            pixels[3 * i] = ((color shr 16) and 0xFF).toFloat()
            pixels[3 * i + 1] = ((color shr 8) and 0xFF).toFloat()
            pixels[3 * i + 2] = (color and 0xFF).toFloat()
        }
        return pixels
    }

    override fun close() {
        inputBuffers.forEach { it.close() }
        outputBuffers.forEach { it.close() }
        model.close()
    }
}
