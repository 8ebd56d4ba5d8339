package dev.keraskd.sample

import android.app.Activity
import android.graphics.BitmapFactory
import android.os.Bundle
import android.widget.TextView

/** Classifies the photo `assets/sample.jpg` with `assets/student_int8.tflite`; shows the top 3. */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this).apply { textSize = 18f; setPadding(32, 32, 32, 32) }
        setContentView(text)
        text.text = try {
            val photo = assets.open(PHOTO).use { BitmapFactory.decodeStream(it) }
            Classifier(this, MODEL).use { classifier ->
                classifier.classify(photo).take(3).joinToString("\n", "$MODEL on $PHOTO:\n") {
                    "%s  %.1f %%".format(it.label, 100 * it.probability)
                }
            }
        } catch (e: Exception) {
            "Could not classify: ${e.message}\nSee export/android/README.md for the asset files."
        }
    }

    companion object {
        const val MODEL = "student_int8.tflite"
        const val PHOTO = "sample.jpg"
    }
}
