package dev.keraskd.sample

import android.app.Activity
import android.graphics.BitmapFactory
import android.os.Bundle
import android.widget.TextView

/** Classifies `assets/sample.png` with `assets/student_int8.tflite` and shows the top 3. */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this).apply { textSize = 18f; setPadding(32, 32, 32, 32) }
        setContentView(text)
        text.text = try {
            val bitmap = assets.open(SAMPLE).use { BitmapFactory.decodeStream(it) }
            Classifier(this, MODEL).use { classifier ->
                classifier.classify(bitmap).take(3).joinToString("\n", "$MODEL on $SAMPLE:\n") {
                    "%s  %.1f %%".format(it.label, 100 * it.probability)
                }
            }
        } catch (e: Exception) {
            "Could not classify: ${e.message}\nSee export/android/README.md for the asset files."
        }
    }

    companion object {
        const val MODEL = "student_int8.tflite"
        const val SAMPLE = "sample.png"
    }
}
